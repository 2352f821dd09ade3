import hashlib
import os
import socket
from typing import Any, List

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase, TestCase

from sockproto.echo import (
    EchoDatagramProtocol,
    EchoFactory,
    EchoOptions,
    EchoProtocol,
    UDPEchoService,
)
from sockproto.testing import (
    connect,
    listen_on_loopback,
    temporary_directory,
    wait_for,
    written,
)


class EchoUnitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.factory = EchoFactory(timeout=30, clock=self.clock)
        self.protocol, self.transport = connect(self.factory)

    def test_every_byte_comes_back_in_order(self) -> None:
        for chunk in [b"hello", b"\x00\xff", b" world\r\n"]:
            self.protocol.dataReceived(chunk)
        self.assertEqual(written(self.transport), b"hello\x00\xff world\r\n")

    def test_half_close_closes_after_sending_the_rest(self) -> None:
        self.protocol.dataReceived(b"last")
        self.protocol.readConnectionLost()
        self.assertEqual(self.transport.value(), b"last")
        self.assertTrue(self.transport.disconnecting)

    def test_transport_is_its_own_producer(self) -> None:
        self.assertIs(self.transport.producer, self.transport)
        self.assertTrue(self.transport.streaming)

    def test_idle_connection_is_closed_after_timeout(self) -> None:
        self.clock.advance(29)
        self.protocol.dataReceived(b"x")
        self.clock.advance(29)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(2)
        self.assertTrue(self.transport.disconnecting)

    def test_factory_tracks_connections(self) -> None:
        self.assertEqual(self.factory.connections, {self.protocol})
        self.protocol.connectionLost()
        self.assertEqual(self.factory.connections, set())

    def test_max_connections_refuses_the_next_one(self) -> None:
        self.factory.maxConnections = 1
        self.assertIsNone(self.factory.buildProtocol(None))

    def test_subclass_can_transform_data(self) -> None:
        class Upper(EchoProtocol):
            def transform(self, data: bytes) -> bytes:
                return data.upper()

        factory = EchoFactory(clock=self.clock)
        factory.protocol = Upper
        protocol, transport = connect(factory)
        protocol.dataReceived(b"abc")
        self.assertEqual(transport.value(), b"ABC")

    def test_transform_set_on_an_instance_is_used(self) -> None:
        factory = EchoFactory(clock=self.clock)
        protocol = factory.buildProtocol(None)
        assert isinstance(protocol, EchoProtocol)
        protocol.transform = bytes.upper  # type: ignore[method-assign]
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"abc")
        self.assertEqual(transport.value(), b"ABC")


class Collector(Protocol):
    """
    A client that writes what it is given and keeps what comes back.
    """

    def __init__(self) -> None:
        self.chunks: List[bytes] = []
        self.received = 0
        self.closed: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)
        self.received += len(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)


class CountingEcho(EchoProtocol):
    def dataReceived(self, data: bytes) -> None:
        self.factory.received += len(data)  # type: ignore[attr-defined]
        self.factory.largest = max(self.factory.largest, len(data))  # type: ignore
        super().dataReceived(data)


class EchoLoopbackTests(TestCase):
    @inlineCallbacks
    def setUp(self) -> Any:
        self.factory = EchoFactory()
        self.server = yield listen_on_loopback(self.factory)
        self.addCleanup(self.server.stop)

    @inlineCallbacks
    def connectClient(self) -> Any:
        client = Collector()
        yield self.server.endpoint().connect(Factory.forProtocol(lambda: client))
        return client

    @inlineCallbacks
    def test_one_megabyte_comes_back_byte_exact_after_half_close(self) -> Any:
        data = os.urandom(1 << 20)
        client = yield self.connectClient()
        client.transport.write(data)
        client.transport.loseWriteConnection()
        yield client.closed
        self.assertEqual(b"".join(client.chunks), data)

    def countChunks(self) -> None:
        self.factory.protocol = CountingEcho
        self.factory.received = 0  # type: ignore[attr-defined]
        self.factory.largest = 0  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_reads_grow_for_bulk_data_and_shrink_for_small_messages(self) -> Any:
        """
        While the peer sends more than a read takes, reads grow from
        Twisted's 64 KiB up to C{readSize}; a small message brings them back.
        """
        self.countChunks()
        client = yield self.connectClient()
        data = os.urandom(8 << 20)
        client.transport.write(data)
        yield wait_for(lambda: sum(map(len, client.chunks)) == len(data))
        self.assertGreater(self.factory.largest, 64 * 1024)  # type: ignore
        self.assertLessEqual(self.factory.largest, EchoProtocol.readSize)  # type: ignore
        [server] = self.factory.connections
        client.transport.write(b"small")
        yield wait_for(lambda: sum(map(len, client.chunks)) == len(data) + 5)
        self.assertEqual(server.transport.bufferSize, 64 * 1024)
        self.assertEqual(b"".join(client.chunks), data + b"small")

    @inlineCallbacks
    def test_small_writes_are_not_delayed(self) -> Any:
        """
        The server's socket has Nagle's algorithm off (C{TCP_NODELAY}).
        """
        yield self.connectClient()
        yield wait_for(lambda: len(self.factory.connections) == 1)
        [server] = self.factory.connections
        handle = server.transport.getHandle()
        self.assertTrue(handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    @inlineCallbacks
    def test_client_that_does_not_read_costs_bounded_memory(self) -> Any:
        """
        50 MB sent by a client that does not read: the server stops reading
        once its output backs up, so it holds far less than 50 MB, and once
        the client reads again every byte comes back.
        """
        self.countChunks()
        size = 50 * (1 << 20)
        data = os.urandom(1 << 20) * 50
        client = yield self.connectClient()
        client.transport.pauseProducing()
        client.transport.write(data)
        stalled = yield wait_until_stable(lambda: self.factory.received)  # type: ignore
        # What the server took is what the kernel buffers of the two sockets
        # hold plus the server's own bound (256 KiB of output, one read).
        self.assertLess(stalled, 16 * (1 << 20), f"server read {stalled} bytes")
        print(
            f"\nserver read {stalled} of {size} bytes while the client was not reading"
        )
        client.transport.resumeProducing()
        client.transport.loseWriteConnection()
        yield client.closed
        echoed = b"".join(client.chunks)
        self.assertEqual(len(echoed), size)
        self.assertEqual(hashlib.sha256(echoed).digest(), hashlib.sha256(data).digest())


class EchoUnixSocketTests(TestCase):
    @inlineCallbacks
    def test_echo_over_a_unix_socket(self) -> Any:
        """
        A UNIX socket is no TCP socket (no C{TCP_NODELAY}): echo works there
        all the same, bulk data included.
        """
        path = os.path.join(temporary_directory(self), "echo.sock")
        port = yield serverFromString(reactor, f"unix:{path}").listen(EchoFactory())
        self.addCleanup(port.stopListening)
        client = Collector()
        endpoint = clientFromString(reactor, f"unix:{path}")
        yield endpoint.connect(Factory.forProtocol(lambda: client))
        data = os.urandom(1 << 20)
        client.transport.write(data)
        client.transport.loseWriteConnection()
        yield client.closed
        self.assertEqual(b"".join(client.chunks), data)


@inlineCallbacks
def wait_until_stable(read: Any, interval: float = 0.05, rounds: int = 6) -> Any:
    """
    Poll C{read()} until it gives the same value C{rounds} times in a row.
    """
    last, same = read(), 0
    while same < rounds:
        yield task.deferLater(reactor, interval, lambda: None)
        value = read()
        same = same + 1 if value == last else 0
        last = value
    return last


class DatagramEchoTests(SynchronousTestCase):
    """
    Echo over UDP, in memory.
    """

    def test_each_datagram_goes_back_to_its_sender_as_it_came(self) -> None:
        protocol = EchoDatagramProtocol(Clock())
        transport = FakeDatagramTransport()
        protocol.makeConnection(transport)  # type: ignore[arg-type]
        protocol.datagramReceived(b"ping", ("127.0.0.1", 5000))
        protocol.datagramReceived(b"x" * 1000, ("::1", 5001))
        self.assertEqual(
            transport.written,
            [(b"ping", ("127.0.0.1", 5000)), (b"x" * 1000, ("::1", 5001))],
        )

    def test_each_sender_is_logged_at_most_once_a_minute(self) -> None:
        clock = Clock()
        protocol = EchoDatagramProtocol(clock)
        protocol.makeConnection(FakeDatagramTransport())  # type: ignore[arg-type]
        events: List[Any] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        for _ in range(100):
            protocol.datagramReceived(b"a", ("10.0.0.1", 1))
        protocol.datagramReceived(b"a", ("10.0.0.2", 1))
        clock.advance(60)
        protocol.datagramReceived(b"a", ("10.0.0.1", 1))
        peers = [
            e["peer"] for e in events if "echo datagram" in e.get("log_format", "")
        ]
        self.assertEqual(peers, ["10.0.0.1:1", "10.0.0.2:1", "10.0.0.1:1"])

    def test_udp_option_takes_a_port_and_an_interface(self) -> None:
        options = EchoOptions()
        options.parseOptions(
            [
                "--udp",
                "12346",
                "--udp",
                "0:interface=127.0.0.1",
                "--udp",
                r"7:interface=\:\:1",
            ]
        )
        self.assertEqual(options["udp"], [(12346, ""), (0, "127.0.0.1"), (7, "::1")])
        for bad in ["x", "70000", "1:iface=a"]:
            self.assertRaises(UsageError, EchoOptions().parseOptions, ["--udp", bad])


class FakeDatagramTransport:
    def __init__(self) -> None:
        self.written: List[Any] = []

    def write(self, data: bytes, addr: Any) -> None:
        self.written.append((data, addr))


class DatagramLoopbackTests(TestCase):
    @inlineCallbacks
    def test_echo_over_udp_on_loopback(self) -> Any:
        service = UDPEchoService(0, "127.0.0.1")
        service.startService()
        self.addCleanup(service.stopService)
        port = service._port.getHost().port  # type: ignore[union-attr]
        client = Receiver()
        listening = reactor.listenUDP(0, client, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        client.transport.write(b"coucou", ("127.0.0.1", port))
        reply = yield client.received
        self.assertEqual(reply, (b"coucou", ("127.0.0.1", port)))

    def test_a_port_in_use_is_one_line_and_exit_1(self) -> None:
        import io
        import socket
        import sys

        taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        stderr = io.StringIO()
        self.patch(sys, "__stderr__", stderr)
        service = UDPEchoService(taken.getsockname()[1], "127.0.0.1")
        with self.assertRaises(SystemExit):
            service.privilegedStartService()
        self.assertIn("echo cannot listen on udp:", stderr.getvalue())
        self.assertEqual(stderr.getvalue().count("\n"), 1)


class Receiver(DatagramProtocol):
    def __init__(self) -> None:
        self.received: Deferred[Any] = Deferred()

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if not self.received.called:
            self.received.callback((data, addr))
