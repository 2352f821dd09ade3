"""
Random bytes in random chunks, to every protocol: nothing raises, nothing
is logged as an error, and the other clients of the same service are still
served.  ``HYPOTHESIS_PROFILE=fuzz pytest -m fuzz`` runs 10,000 examples of
each.
"""

from typing import Any, Callable, List, Tuple

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from sockproto.chat import ChatFactory, ChatServer
from sockproto.coucou import CoucouServerFactory, MessageList
from sockproto.echo import EchoFactory
from sockproto.testing import connect

NOISE = [
    b"\n",
    b"\r\n",
    b"\r",
    b"\x00",
    b"\xff",
    b"\x1b[2J",
    b"\x07",
    b"/",
    b"//",
    b"/nick ",
    b"/me ",
    b"/msg guest2 ",
    b"/join ",
    b"/part",
    b"/quit",
    b"/who",
    b"/rooms",
    b"/help",
    b"/nick a\n",
    b"x" * 200,
    "é✓".encode(),
]

chunks = st.lists(
    st.one_of(st.binary(max_size=300), st.sampled_from(NOISE)), max_size=40
)
endings = st.sampled_from(["close", "reset", "half-close", "open"])


def peer(port: int) -> IPv4Address:
    return IPv4Address("TCP", "127.0.0.1", port)


def feed(protocol: Any, pieces: List[bytes], ending: str, clock: Clock) -> None:
    for piece in pieces:
        if protocol.transport.disconnecting:
            break
        protocol.dataReceived(piece)
        clock.advance(0)
    if ending == "half-close" and hasattr(protocol, "readConnectionLost"):
        protocol.readConnectionLost()
    if ending in ("close", "half-close") or protocol.transport.disconnecting:
        protocol.connectionLost(Failure(ConnectionDone()))
    elif ending == "reset":
        protocol.connectionLost(Failure(ConnectionLost()))
    clock.advance(0)


@pytest.mark.fuzz
class FuzzTests(SynchronousTestCase):
    def check(
        self,
        build: Callable[[Clock], Any],
        stillServed: Callable[[Any, Any, Clock], None],
        pieces: List[bytes],
        ending: str,
    ) -> None:
        clock = Clock()
        factory = build(clock)
        victim, _ = connect(factory, peer(1))
        other, otherTransport = connect(factory, peer(2))
        clock.advance(0)
        feed(victim, pieces, ending, clock)
        stillServed(factory, (other, otherTransport), clock)
        self.assertEqual(self.flushLoggedErrors(), [])

    @given(chunks, endings)
    def test_echo(self, pieces: List[bytes], ending: str) -> None:
        def stillServed(factory: Any, client: Tuple[Any, Any], clock: Clock) -> None:
            protocol, transport = client
            transport.clear()
            protocol.dataReceived(b"ping")
            self.assertEqual(transport.value(), b"ping")

        self.check(lambda clock: EchoFactory(clock=clock), stillServed, pieces, ending)

    @given(chunks, endings)
    def test_coucou(self, pieces: List[bytes], ending: str) -> None:
        def build(clock: Clock) -> Any:
            return CoucouServerFactory(MessageList(), clock=clock)

        def stillServed(factory: Any, client: Tuple[Any, Any], clock: Clock) -> None:
            protocol, transport = client
            protocol.dataReceived(b"still here\n")
            self.assertEqual(factory.sink.messages[-1], "still here")
            self.assertEqual(factory.sink.peers[-1], "127.0.0.1:2")

        self.check(build, stillServed, pieces, ending)

    @given(chunks, endings)
    def test_chat(self, pieces: List[bytes], ending: str) -> None:
        def build(clock: Clock) -> Any:
            server = ChatServer("fuzz", clock)
            return ChatFactory(server, clock=clock, rateLimit=0, maxLineLength=100)

        def stillServed(factory: Any, client: Tuple[Any, Any], clock: Clock) -> None:
            protocol, transport = client
            transport.clear()
            protocol.dataReceived(b"/who\nstill here\n")
            clock.advance(0)
            text = transport.value().decode("utf-8")
            self.assertIn(f"<{protocol.nick}> still here\r\n", text)
            self.assertNotIn("\x1b", text)
            self.assertNotIn("\x07", text)

        self.check(build, stillServed, pieces, ending)
