"""
Faults from the network: a client that resets mid-message, one that
half-closes, one that vanishes without a FIN; and per-peer limits.  Each
leaves the service healthy for everyone else.
"""

import socket
import struct
from typing import Any, Callable, List

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from sockproto.chat import ChatFactory, ChatServer
from sockproto.coucou import CoucouServerFactory, MessageList
from sockproto.echo import EchoFactory
from sockproto.server import (
    DEFAULT_MAX_PER_PEER,
    FD_HEADROOM,
    ServiceFactory,
    default_max_connections,
    peer_key,
    send_now,
    tcp_idle,
)
from sockproto.testing import (
    connect,
    connect_line_client,
    listen_on_loopback,
    wait_for,
)


def factories(clock: Any = None, **limits: Any) -> List[ServiceFactory]:
    kw = {"clock": clock} if clock is not None else {}
    chatServer = ChatServer("faults", clock) if clock is not None else None
    return [
        EchoFactory(**kw, **limits),
        CoucouServerFactory(MessageList(), **kw, **limits),
        ChatFactory(chatServer, rateLimit=0, **kw, **limits),
    ]


class AbortRecorder(StringTransport):
    aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()


class VanishedPeerTests(SynchronousTestCase):
    def test_idle_timeout_then_abort_if_the_close_never_completes(self) -> None:
        for factory in factories(Clock(), timeout=30):
            clock = factory.clock
            protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
            transport = AbortRecorder()
            protocol.makeConnection(transport)
            clock.advance(31)  # type: ignore[attr-defined]
            self.assertTrue(transport.disconnecting, factory.serviceName)
            self.assertFalse(transport.aborted)
            clock.advance(protocol.abortDelay)  # type: ignore[attr-defined]
            self.assertTrue(transport.aborted, factory.serviceName)


class PerPeerLimitTests(SynchronousTestCase):
    def test_each_service_limits_connections_per_peer(self) -> None:
        clock = Clock()
        for factory in factories(clock, maxPerPeer=2):
            first, _ = connect(factory, IPv4Address("TCP", "10.0.0.1", 1))
            connect(factory, IPv4Address("TCP", "10.0.0.1", 2))
            third = factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 3))
            if factory.perPeerMessage is None:
                self.assertIsNone(third)
            else:
                transport = StringTransport()
                third.makeConnection(transport)
                self.assertEqual(transport.value(), factory.perPeerMessage)
                self.assertTrue(transport.disconnecting)
            connect(factory, IPv4Address("TCP", "10.0.0.2", 1))  # another peer
            first.connectionLost()
            clock.advance(factory.peerRefill)
            connect(factory, IPv4Address("TCP", "10.0.0.1", 4))  # room again
            self.assertEqual(factory.perPeer, {"10.0.0.1": 2, "10.0.0.2": 1})

    def test_a_peer_connecting_too_fast_is_refused_for_a_while(self) -> None:
        clock = Clock()
        for factory in factories(clock, maxPerPeer=4):
            peer = IPv4Address("TCP", "10.0.0.1", 1)
            for _ in range(4):
                protocol, _ = connect(factory, peer)
                protocol.connectionLost()
            self.assertIsNone(factory.buildProtocol(peer), factory.serviceName)
            self.assertIsNotNone(
                factory.buildProtocol(IPv4Address("TCP", "10.0.0.2", 1))
            )
            clock.advance(factory.peerRefill / 4)
            self.assertIsNotNone(factory.buildProtocol(peer))

    def test_ipv6_peers_count_by_their_64_network(self) -> None:
        for factory in factories(Clock(), maxPerPeer=2):
            for host in ["2001:db8:1:2::1", "2001:db8:1:2:ffff::9"]:
                connect(factory, IPv6Address("TCP", host, 1))
            self.assertIsNotNone(
                factory.buildProtocol(IPv6Address("TCP", "2001:db8:1:3::1", 1))
            )
            refused = factory.buildProtocol(IPv6Address("TCP", "2001:db8:1:2::7", 1))
            self.assertNotIsInstance(refused, type(factory).protocol)


class DefaultLimitTests(SynchronousTestCase):
    def test_defaults_are_a_per_peer_limit_and_a_share_of_the_fd_limit(self) -> None:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        for factory in factories(Clock()):
            self.assertEqual(factory.maxPerPeer, DEFAULT_MAX_PER_PEER)
            self.assertEqual(factory.maxConnections, default_max_connections())
        self.assertEqual(default_max_connections(3), (soft - FD_HEADROOM) // 3)

    def test_peer_key(self) -> None:
        self.assertEqual(peer_key("192.0.2.1"), "192.0.2.1")
        self.assertEqual(peer_key("::ffff:192.0.2.1"), "192.0.2.1")
        self.assertEqual(peer_key("2001:db8::1"), "2001:db8::/64")
        self.assertEqual(peer_key("fe80::1%eth0"), "fe80::/64")

    def test_refusals_are_logged_at_a_bounded_rate(self) -> None:
        clock = Clock()
        [factory, *_] = factories(clock, maxPerPeer=1)
        events: List[Any] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        connect(factory, IPv4Address("TCP", "10.0.0.1", 1))
        for port in range(1000):
            factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", port))
        refusals = [e for e in events if "refusing" in e.get("log_format", "")]
        self.assertEqual(len(refusals), 1)
        clock.advance(factory.refusalLogInterval)
        factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1))
        refusals = [e for e in events if "refusing" in e.get("log_format", "")]
        self.assertEqual(len(refusals), 2)
        self.assertEqual(refusals[1]["unlogged"], 999)


def raw_client(host: str, port: int) -> socket.socket:
    client = socket.create_connection((host, port))
    client.setblocking(False)
    return client


def reset(client: socket.socket) -> None:
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


class FaultTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def each_service(self, fault: Callable[[socket.socket], Any], **limits: Any) -> Any:
        """
        For each service: a healthy client, a faulty one; the fault; then
        the server has let the faulty one go and still serves the other.
        With an idle timeout, the healthy client connects after the fault,
        as it would be timed out too.
        """
        idle = "timeout" in limits
        for factory in factories(**limits):
            server = yield listen_on_loopback(factory)
            self.addCleanup(server.stop)
            if not idle:
                healthy = yield connect_line_client(server.endpoint())
                yield wait_for(lambda f=factory: len(f.connections) == 1)
            client = raw_client(server.host, server.portNumber)
            self.addCleanup(client.close)
            others = 0 if idle else 1
            yield wait_for(lambda f=factory, n=others: len(f.connections) == n + 1)
            fault(client)
            yield wait_for(lambda f=factory, n=others: len(f.connections) == n, 10)
            if idle:
                healthy = yield connect_line_client(server.endpoint())
            yield self.still_served(factory, healthy)
            healthy.transport.loseConnection()
            yield healthy.closed

    @inlineCallbacks
    def still_served(self, factory: Any, client: Any) -> Any:
        client.send("still here")
        if isinstance(factory, CoucouServerFactory):
            yield wait_for(lambda: factory.sink.messages[-1:] == ["still here"])
        else:
            yield client.expect("still here")

    def test_reset_mid_message(self) -> Any:
        def fault(client: socket.socket) -> None:
            client.send(b"half a mess")
            reset(client)

        return self.each_service(fault)

    def test_half_close(self) -> Any:
        def fault(client: socket.socket) -> None:
            client.send(b"last words")
            client.shutdown(socket.SHUT_WR)

        return self.each_service(fault)

    def test_vanished_without_fin_is_caught_by_idle_timeout(self) -> Any:
        # The client sends half a line and is never heard of again: no FIN,
        # no RST.  Only the idle timeout can tell.
        return self.each_service(lambda client: client.send(b"half"), timeout=0.5)


class TcpIdleTests(TestCase):
    """
    L{tcp_idle} reads Twisted's private write buffer: if Twisted changes
    how it buffers, this fails, and the eager write path must change too.
    """

    @inlineCallbacks
    def test_idle_until_something_waits_to_be_sent(self) -> Any:
        factory = EchoFactory()
        server = yield listen_on_loopback(factory)
        self.addCleanup(server.stop)
        client = raw_client("127.0.0.1", server.portNumber)
        self.addCleanup(client.close)
        yield wait_for(lambda: len(factory.connections) == 1)
        [protocol] = factory.connections
        transport = protocol.transport
        self.assertTrue(tcp_idle(transport))
        transport.write(b"x" * (8 << 20))  # far more than the socket takes
        self.assertFalse(tcp_idle(transport))
        transport.loseConnection()
        self.assertFalse(tcp_idle(transport))


class FakeSocket:
    """
    A socket whose C{send} takes at most C{room} bytes, or raises C{error}.
    """

    def __init__(self, room: int = 1 << 30, error: Any = None) -> None:
        self.room, self.error = room, error
        self.calls: List[int] = []

    def send(self, data: bytes) -> int:
        self.calls.append(len(data))
        if self.error is not None:
            raise self.error
        return min(len(data), self.room)


class FakeTcpTransport:
    def __init__(self, sock: FakeSocket) -> None:
        self.sock = sock

    def getHandle(self) -> FakeSocket:
        return self.sock


class SendNowTests(SynchronousTestCase):
    """
    L{send_now}: one system call, whatever the size; the rest is returned.
    """

    def test_a_large_write_is_one_send(self) -> None:
        sock = FakeSocket()
        data = b"x" * (300 * 1024)  # more than Twisted's 128 KiB a call
        self.assertEqual(send_now(FakeTcpTransport(sock), data), b"")
        self.assertEqual(sock.calls, [len(data)])

    def test_what_the_socket_does_not_take_is_returned(self) -> None:
        sock = FakeSocket(room=3)
        self.assertEqual(send_now(FakeTcpTransport(sock), b"abcdef"), b"def")

    def test_a_full_socket_or_an_error_sends_nothing(self) -> None:
        for error in [BlockingIOError(), ConnectionResetError(), BrokenPipeError()]:
            sock = FakeSocket(error=error)
            self.assertEqual(send_now(FakeTcpTransport(sock), b"abc"), b"abc")
