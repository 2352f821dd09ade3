import sys
from pathlib import Path
from typing import Any, List

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer, error, reactor, utils
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from sockproto.coucou import (
    CoucouServerFactory,
    ICoucouSink,
    MessageList,
    StreamSink,
    send_message,
)
from sockproto.testing import connect, connect_in_memory, listen_on_loopback

COURSE = Path(__file__).parent.parent / "examples" / "course"


def serve(maxSize: int = 140) -> Any:
    clock = Clock()
    sink = MessageList()
    factory = CoucouServerFactory(sink, maxSize=maxSize, timeout=60, clock=clock)
    protocol, transport = connect(factory)
    return protocol, transport, sink, clock


class CoucouServerTests(SynchronousTestCase):
    def test_message_ends_at_end_of_stream(self) -> None:
        protocol, transport, sink, _ = serve()
        protocol.dataReceived(b"cou")
        protocol.dataReceived(b"cou")
        protocol.connectionLost(Failure(error.ConnectionDone()))
        self.assertEqual(sink.messages, ["coucou"])
        self.assertEqual(sink.peers, ["127.0.0.1:40000"])

    def test_half_close_ends_the_message_and_server_closes(self) -> None:
        protocol, transport, sink, _ = serve()
        protocol.dataReceived(b"coucou")
        protocol.readConnectionLost()
        self.assertEqual(sink.messages, ["coucou"])
        self.assertTrue(transport.disconnecting)

    def test_each_line_is_a_message_lf_or_crlf(self) -> None:
        protocol, transport, sink, _ = serve()
        protocol.dataReceived(b"one\ntwo\r\n\nthree")
        self.assertEqual(sink.messages, ["one", "two"])
        self.assertFalse(transport.disconnecting)

    def test_reset_connection_does_not_complete_a_half_message(self) -> None:
        protocol, transport, sink, _ = serve()
        protocol.dataReceived(b"half")
        protocol.connectionLost(Failure(error.ConnectionLost()))
        self.assertEqual(sink.messages, [])

    def test_message_over_limit_gets_error_and_disconnect(self) -> None:
        protocol, transport, sink, _ = serve(maxSize=10)
        protocol.dataReceived(b"x" * 11)
        self.assertEqual(transport.value(), b"error: message longer than 10 bytes\n")
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(Failure(error.ConnectionDone()))
        self.assertEqual(sink.messages, [])

    def test_control_characters_never_reach_the_sink(self) -> None:
        protocol, transport, sink, _ = serve()
        protocol.dataReceived(b"\x1b[2Jhi\x07 \xff\n")
        self.assertEqual(sink.messages, ["hi \ufffd"])

    def test_messages_over_the_rate_limit_wait(self) -> None:
        protocol, transport, sink, clock = serve()  # 5 a second, bursts of 10
        protocol.dataReceived(b"".join(b"m%d\n" % i for i in range(12)))
        self.assertEqual(len(sink.messages), 10)
        self.assertEqual(transport.producerState, "paused")
        clock.advance(0.4)
        self.assertEqual(len(sink.messages), 12)
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(transport.value(), b"")

    def test_a_flood_is_disconnected_with_one_error_line(self) -> None:
        protocol, transport, sink, _ = serve()
        protocol.dataReceived(b"coucou\n" * 10000)
        self.assertEqual(
            transport.value(), b"error: too many messages too fast: disconnecting\n"
        )
        self.assertTrue(transport.disconnecting)
        self.assertLessEqual(len(sink.messages), 10)

    def test_silent_client_is_dropped_after_timeout(self) -> None:
        protocol, transport, sink, clock = serve()
        clock.advance(61)
        self.assertIn(b"timed out", transport.value())
        self.assertTrue(transport.disconnecting)

    @given(st.binary(max_size=400), st.lists(st.integers(min_value=0), max_size=10))
    def test_any_chunking_gives_the_same_messages(
        self, data: bytes, cuts: List[int]
    ) -> None:
        def run(pieces: List[bytes]) -> Any:
            protocol, transport, sink, _ = serve()
            for piece in pieces:
                protocol.dataReceived(piece)
            protocol.connectionLost(Failure(error.ConnectionDone()))
            return sink.messages, transport.value()

        points = sorted({c % (len(data) + 1) for c in cuts})
        pieces = [data[a:b] for a, b in zip([0] + points, points + [len(data)])]
        self.assertEqual(run(pieces), run([data]))

    def test_sinks_provide_the_interface(self) -> None:
        verifyObject(ICoucouSink, MessageList())
        verifyObject(ICoucouSink, StreamSink())

    def test_stream_sink_prints_one_line_per_message(self) -> None:
        import io

        stream = io.StringIO()
        sink = StreamSink(stream)
        sink.messageReceived("coucou", "127.0.0.1:1")
        sink.flush()
        self.assertEqual(stream.getvalue(), "[127.0.0.1:1] coucou\n")
        sink.close()

    def test_message_shaped_like_a_log_line_cannot_pass_for_one(self) -> None:
        import io

        forged = (
            "2026-11-25T06:00:00+0000 [sockproto.coucou#info] chat: wrong"
            " password for alice from 10.6.6.6:1"
        )
        stream = io.StringIO()
        sink = StreamSink(stream)
        sink.messageReceived(forged, "127.0.0.1:1")
        sink.close()
        [line] = stream.getvalue().splitlines()
        self.assertTrue(line.startswith("[127.0.0.1:1] "), line)

    def test_a_stream_nobody_reads_never_blocks_the_reactor(self) -> None:
        import os

        readEnd, writeEnd = os.pipe()
        stream = os.fdopen(writeEnd, "w")
        sink = StreamSink(stream)
        count = 5000  # 500 kB: far more than a pipe holds
        for _ in range(count):  # would hang here if a write could block
            sink.messageReceived("x" * 100, "127.0.0.1:1")
        self.assertGreater(sink.dropped, 0)
        self.assertLess(sink.dropped, count)
        os.close(readEnd)  # the writer thread's blocked write now fails
        sink.close(timeout=10)
        self.assertRaises(OSError, stream.close)


class ClientInMemoryTests(SynchronousTestCase):
    def test_send_message_delivers_and_waits_for_close(self) -> None:
        clock = Clock()
        sink = MessageList()
        server = CoucouServerFactory(sink, clock=clock)
        results: List[bytes] = []

        class Endpoint:
            def connect(self, factory: Factory) -> Any:
                client, _, self.pump = connect_in_memory(server, factory, clock)
                return defer.succeed(client)

        endpoint = Endpoint()
        d = send_message(endpoint, b"coucou")  # type: ignore[arg-type]
        d.addCallback(results.append)
        endpoint.pump.flush()
        self.assertEqual(sink.messages, ["coucou"])
        self.assertEqual(results, [b""])


class CoucouLoopbackTests(TestCase):
    @inlineCallbacks
    def setUp(self) -> Any:
        self.sink = MessageList()
        self.server = yield listen_on_loopback(
            CoucouServerFactory(self.sink, maxPerPeer=0, rateLimit=0)
        )
        self.addCleanup(self.server.stop)

    @inlineCallbacks
    def test_send_message_over_loopback(self) -> Any:
        reply = yield send_message(self.server.endpoint(), "héllo".encode(), timeout=5)
        self.assertEqual(reply, b"")
        self.assertEqual(self.sink.messages, ["héllo"])

    @inlineCallbacks
    def test_many_concurrent_clients(self) -> Any:
        messages = [f"message {i}".encode() for i in range(50)]
        yield defer.gatherResults(
            [send_message(self.server.endpoint(), m, timeout=10) for m in messages]
        )
        self.assertEqual(
            sorted(self.sink.messages), sorted(m.decode() for m in messages)
        )

    @inlineCallbacks
    def test_too_long_message_gets_error_reply(self) -> Any:
        reply = yield send_message(self.server.endpoint(), b"x" * 141, timeout=5)
        self.assertEqual(reply, b"error: message longer than 140 bytes\n")
        self.assertEqual(self.sink.messages, [])

    @inlineCallbacks
    def test_course_client_is_understood(self) -> Any:
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable,
            [str(COURSE / "client.py"), "localhost", str(self.server.portNumber)],
        )
        self.assertEqual(code, 0, err)
        yield wait_for(lambda: self.sink.messages)
        self.assertEqual(self.sink.messages, ["coucou"])


class CourseServer(ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.listening: defer.Deferred[int] = defer.Deferred()
        self.ended: defer.Deferred[None] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data
        if not self.listening.called and b"\n" in self.output:
            self.listening.callback(int(self.output.split()[2]))

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)


class CourseServerInteropTests(TestCase):
    @inlineCallbacks
    def test_send_message_to_the_course_server(self) -> Any:
        course = CourseServer()
        reactor.spawnProcess(  # type: ignore[attr-defined]
            course, sys.executable, [sys.executable, str(COURSE / "server.py"), "0"]
        )
        port = yield course.listening.addTimeout(10, reactor)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        yield send_message(endpoint, b"coucou", timeout=10)
        yield course.ended
        self.assertEqual(course.output.splitlines()[-1], b"coucou")


@inlineCallbacks
def wait_for(condition: Any, timeout: float = 5.0) -> Any:
    from twisted.internet import task

    waited = 0.0
    while not condition() and waited < timeout:
        yield task.deferLater(reactor, 0.01, lambda: None)
        waited += 0.01
