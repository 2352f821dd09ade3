"""
Random bytes in random chunks, to every protocol: nothing raises, nothing
is logged as an error, and the other clients of the same service are still
served.  ``HYPOTHESIS_PROFILE=fuzz pytest -m fuzz`` runs 10,000 examples of
each.
"""

from typing import Any, Callable, List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from sockproto.coucou import CoucouServerFactory, MessageList
from sockproto.echo import EchoFactory
from sockproto.testing import ChatOnClock, connect

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


IRC_NOISE = [
    b"NICK x\r\n",
    b"USER x 0 * :x\r\n",
    b"CAP LS 302\r\n",
    b"CAP END\r\n",
    b"JOIN #lobby,#a\r\n",
    b"JOIN :\r\n",
    b"PART #lobby :\r\n",
    b"PRIVMSG #lobby :\x01ACTION x\x01\r\n",
    b"PRIVMSG sockproto :rooms\r\n",
    b"NOTICE x :y\r\n",
    b":prefix\r\n",
    b": \r\n",
    b"MODE\r\n",
    b"WHO #lobby\r\n",
    b"QUIT\r\n",
]
irc_chunks = st.lists(
    st.one_of(st.binary(max_size=300), st.sampled_from(NOISE + IRC_NOISE)), max_size=40
)


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
            return ChatOnClock(clock=clock, maxLineLength=100, maxPerPeer=32).factory

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

    @given(irc_chunks, endings)
    def test_irc(self, pieces: List[bytes], ending: str) -> None:
        from sockproto.chat.frontends.irc.protocol import IrcChatFactory

        def build(clock: Clock) -> Any:
            chat = ChatOnClock(clock=clock, maxPerPeer=32)
            return IrcChatFactory(chat.factory)

        def stillServed(factory: Any, client: Tuple[Any, Any], clock: Clock) -> None:
            protocol, transport = client
            protocol.dataReceived(b"NICK zed\r\nUSER z 0 * :z\r\nJOIN #lobby\r\n")
            clock.advance(0)
            text = transport.value().decode("utf-8")
            self.assertIn(" 001 zed ", text)
            self.assertIn(":zed!zed@sockproto JOIN #lobby", text)

        self.check(build, stillServed, pieces, ending)


class StrictTransport(StringTransport):
    """
    A transport that fails on a write once the connection is lost, as a TCP
    transport whose socket is gone does.
    """

    lost = False

    def write(self, data: bytes) -> None:
        if self.lost:
            raise AttributeError("'Server' object has no attribute 'socket'")
        super().write(data)


actions = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(0, 5), st.sampled_from(NOISE)),
        st.tuples(st.just("close"), st.integers(0, 5), st.just(b"")),
        st.tuples(st.just("turn"), st.just(0), st.just(b"")),
    ),
    max_size=60,
)


@pytest.mark.fuzz
class ConcurrentCloseFuzzTests(SynchronousTestCase):
    """
    Six chat clients; random lines and closes in any order, several in one
    reactor turn (mid-batch): the room, the nicknames and the slots stay
    right, and the survivors still hear each other.
    """

    @given(actions)
    def test_chat_clients_closing_in_any_order(self, steps: List[Any]) -> None:
        chat = ChatOnClock(maxLineLength=100)
        clock, factory = chat.clock, chat.factory
        clients = []
        for port in range(6):
            protocol = factory.buildProtocol(peer(port))
            transport = StrictTransport(peerAddress=peer(port))
            protocol.makeConnection(transport)
            clients.append((protocol, transport))
        clock.advance(0)
        for kind, index, data in steps:
            protocol, transport = clients[index]
            if kind == "turn":
                clock.advance(0)
            elif transport.lost:
                continue
            elif kind == "send":
                protocol.dataReceived(data)
            else:
                transport.lost = True
                protocol.connectionLost(Failure(ConnectionLost()))
        for protocol, transport in clients:  # a close asked for by the server
            if transport.disconnecting and not transport.lost:
                transport.lost = True
                protocol.connectionLost(Failure(ConnectionDone()))
        clock.advance(0)
        self.assertConsistent(factory, clients)
        self.assertEqual(self.flushLoggedErrors(), [])

    def assertConsistent(self, factory: Any, clients: List[Any]) -> None:
        alive = [p for p, t in clients if not t.lost]
        self.assertEqual(factory.connections, set(alive))
        self.assertEqual(sum(factory.perPeer.values()), len(alive))
        server = factory.server
        for protocol in alive:
            self.assertIs(server.find(protocol.nick), protocol)
        members = {
            id(p) for room in server._rooms.values() for p in room.members.values()
        }
        self.assertEqual(members, {id(p) for p in alive})
        for protocol, transport in clients:
            if transport.lost:
                self.assertIsNot(server.find(protocol.nick), protocol)
        if len(alive) >= 2:
            speaker, listener = alive[0], alive[1]
            speaker.dataReceived(b"/join lobby\n/part\n")
            listener.dataReceived(b"/join lobby\n/part\n")
            clock = factory.clock
            clock.advance(0)
            listener.transport.clear()
            speaker.dataReceived(b"still here\n")
            clock.advance(0)
            text = listener.transport.value().decode("utf-8")
            self.assertIn(f"<{speaker.nick}> still here\r\n", text)


def json_values() -> Any:
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text()
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.sampled_from(["type", "text", "x"]), inner, max_size=3)
        ),
        max_leaves=8,
    )


requests = st.one_of(
    st.builds(
        lambda kind, text: {"type": kind, "text": text},
        st.sampled_from(["line", "who", "rooms", "nope"]),
        st.one_of(
            st.text(max_size=300), st.sampled_from([n.decode("latin-1") for n in NOISE])
        ),
    ),
    json_values(),
)
frames = st.lists(
    st.one_of(
        st.tuples(st.just("json"), requests),
        st.tuples(st.just("text"), st.text(max_size=400)),
        st.tuples(st.just("bytes"), st.binary(max_size=200)),
        st.tuples(st.just("ping"), st.binary(max_size=100)),
    ),
    max_size=20,
)


def encode_frames(client: Any, items: List[Tuple[str, Any]]) -> bytes:
    import json

    from wsproto.events import BytesMessage, Ping, TextMessage

    out = b""
    for kind, value in items:
        if kind == "json":
            event: Any = TextMessage(json.dumps(value))
        elif kind == "text":
            event = TextMessage(value)
        elif kind == "bytes":
            event = BytesMessage(value)
        else:
            event = Ping(value)
        out += client.connection.send(event)
    return out


def cut(data: bytes, points: List[int]) -> List[bytes]:
    points = sorted({p % (len(data) + 1) for p in points})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:])]


# Each WebSocket example makes an HTTP connection and a handshake: at most
# 2,500 of them per test, so that CI stays within its time.
handshaking = settings(max_examples=min(settings.default.max_examples, 2_500))


@pytest.mark.fuzz
class WebSocketFuzzTests(SynchronousTestCase):
    """
    The chat's WebSocket: random bytes, and random frames in random chunks,
    after the upgrade; nothing raises, the others are still served.
    """

    def stillServed(self, chat: ChatOnClock) -> None:
        other, _, pump = chat.browser()
        other.say("still here")
        pump.flush()
        said = [m for m in other.messages if m["type"] == "message"]
        self.assertEqual(said[-1]["text"], "still here")
        self.assertEqual(self.flushLoggedErrors(), [])

    @handshaking
    @given(chunks, endings)
    def test_random_bytes_after_the_upgrade(
        self, pieces: List[bytes], ending: str
    ) -> None:
        chat = ChatOnClock(maxLineLength=100)
        client, server, pump = chat.browser()
        feed(server, pieces, ending, chat.clock)
        self.stillServed(chat)

    @handshaking
    @given(chunks, endings)
    def test_random_bytes_as_http(self, pieces: List[bytes], ending: str) -> None:
        chat = ChatOnClock(maxLineLength=100)
        victim, _ = connect(chat.web(), peer(1))
        feed(victim, pieces, ending, chat.clock)
        self.stillServed(chat)

    @handshaking
    @given(frames, st.lists(st.integers(0, 10000), max_size=12))
    def test_random_frames_in_random_chunks(
        self, items: Any, points: List[int]
    ) -> None:
        chat = ChatOnClock(maxLineLength=100)
        client, server, pump = chat.browser()
        for piece in cut(encode_frames(client, items), points):
            if server.transport.disconnecting:
                break
            server.dataReceived(piece)
            chat.clock.advance(0)
        self.stillServed(chat)


class WebSocketChunkingTests(SynchronousTestCase):
    """
    However the byte stream is cut, the server gets the same messages and
    answers the same.
    """

    @given(frames, st.lists(st.integers(0, 10000), max_size=12))
    def test_any_chunking_gives_the_same_result(
        self, items: Any, points: List[int]
    ) -> None:
        answers = []
        for cutting in ([], points):
            chat = ChatOnClock(maxLineLength=100)
            client, server, pump = chat.browser()
            for piece in cut(encode_frames(client, items), cutting):
                server.dataReceived(piece)
            pump.flush()
            answers.append(
                [{k: v for k, v in m.items() if k != "ts"} for m in client.messages]
            )
        self.assertEqual(answers[0], answers[1])


def _raw_json(draw: Any) -> str:
    """
    JSON text as a hostile client writes it: deep, huge, NaN, duplicated.
    """
    import json

    kind = draw(st.sampled_from(["value", "deep", "number", "duplicate", "escape"]))
    if kind == "value":
        value = draw(st.one_of(requests, json_values()))
        return json.dumps(value)  # NaN and Infinity as Python writes them
    if kind == "deep":
        depth = draw(st.integers(1, 600))
        opening = draw(st.sampled_from(["[", '{"a":', '{"type":"line","text":[']))
        closing = {"[": "]", '{"a":': "}", '{"type":"line","text":[': "]}"}[opening]
        return opening * depth + "0" + closing * depth
    if kind == "number":
        digits = draw(st.integers(1, 1200))
        number = draw(st.sampled_from(["9" * digits, f"1e{digits}", f"-0.{digits}"]))
        return '{"type": "line", "text": ' + number + "}"
    if kind == "duplicate":
        return '{"type": "line", "text": "a", "text": "b", "type": "who"}'
    escape = draw(st.sampled_from(["\\ud800", "\\udfff", "\\u0000", "\\n"]))
    field = draw(st.sampled_from(["type", "text"]))
    other = "text" if field == "type" else "type"
    return '{"' + field + '": "x' + escape + '", "' + other + '": "line"}'


raw_json = st.composite(lambda draw: _raw_json(draw))()


@pytest.mark.fuzz
class JsonFuzzTests(SynchronousTestCase):
    """
    Structured JSON, not only bytes: whatever one message holds, it gets at
    most one error, and the session answers the next one.
    """

    @handshaking
    @given(st.lists(raw_json, min_size=1, max_size=5))
    def test_any_json_gets_at_most_one_error_and_the_session_goes_on(
        self, texts: List[str]
    ) -> None:
        chat = ChatOnClock(rateLimit=0)
        client, server, pump = chat.browser()
        for text in texts:
            seen = len(client.messages)
            client.sendText(text)
            pump.flush()
            errors = [m for m in client.messages[seen:] if m["type"] == "error"]
            self.assertLessEqual(len(errors), 1, text[:80])
        client.say("after it all")
        pump.flush()
        said = [m for m in client.messages if m["type"] == "message"]
        self.assertEqual(said[-1]["text"], "after it all")
        self.assertEqual(self.flushLoggedErrors(), [])


FORGED = "\n2026-12-03T10:00:00+0000 [sockproto.service#info] forged line"
LOG_NOISE = [FORGED.encode(), b"\r" + FORGED.encode(), "\u2028x\u0085y".encode()]


@pytest.mark.fuzz
class LogLineFuzzTests(SynchronousTestCase):
    """
    No input, on any protocol, puts a line break into the log: each event
    is one line once formatted.
    """

    def setUp(self) -> None:
        from twisted.logger import formatEvent, globalLogPublisher

        self.lines: List[str] = []

        def observe(event: Any) -> None:
            self.lines.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def assertOneLineEach(self) -> None:
        for line in self.lines:
            self.assertNotIn("\n", line)
            self.assertNotIn("\r", line)
            self.assertNotIn("\u2028", line)
            self.assertNotIn("\x85", line)
        self.assertEqual(self.flushLoggedErrors(), [])

    @given(
        st.lists(
            st.one_of(
                st.binary(max_size=100),
                st.sampled_from(NOISE + IRC_NOISE + LOG_NOISE),
                st.sampled_from(LOG_NOISE).map(lambda n: b"/nick " + n + b"\n"),
                st.sampled_from(LOG_NOISE).map(lambda n: b"FOO" + n[1:] + b"\r\n"),
            ),
            max_size=20,
        ),
        st.sampled_from(["chat", "irc"]),
    )
    def test_lines_and_irc(self, pieces: List[bytes], service: str) -> None:
        chat = ChatOnClock(rateLimit=0)
        factory: Any = chat.factory
        if service == "irc":
            from sockproto.chat.frontends.irc.protocol import IrcChatFactory

            factory = IrcChatFactory(chat.factory)
        victim, _ = connect(factory, peer(1))
        feed(victim, pieces, "close", chat.clock)
        self.assertOneLineEach()

    @handshaking
    @given(
        st.one_of(
            st.text(max_size=100), st.sampled_from([n.decode() for n in LOG_NOISE])
        ),
        st.integers(1000, 4999),
    )
    def test_websocket_close_reasons_and_messages(self, text: str, code: int) -> None:
        import json

        from wsproto.events import CloseConnection

        chat = ChatOnClock(rateLimit=0)
        client, server, pump = chat.browser()
        forged = (text or FORGED).replace("\r", "\x85").replace("\n", "\x0b")
        victim, _ = connect(chat.web(), peer(3))
        victim.dataReceived(
            b"GET /ws HTTP/1.1\r\nHost: localhost\r\nOrigin: http://"
            + forged.encode("utf-8")
            + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        )
        if client.opened.called:
            client.sendText(json.dumps({"type": text, "text": text}))
            client.sendText("{" + text)
            if code not in (1004, 1005, 1006) and not 1016 <= code < 3000:
                client.transport.write(
                    client.connection.send(CloseConnection(code, text[:100]))
                )
            pump.flush()
        self.assertOneLineEach()
