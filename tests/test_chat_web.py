"""
The chat's web front end: the WebSocket member in memory on a Clock (JSON
in, JSON out, limits, bad frames, origins), and the page and the
WebSocket over real loopback sockets, with a line client in the same room.
"""

import json
from typing import Any, Dict, List

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from wsproto.events import CloseConnection

from sockproto.chat import ChatFactory
from sockproto.chat.frontends.web.protocol import WebChatFactory, text_frame
from sockproto.testing import (
    ChatOnClock,
    WebSocketClient,
    connect_in_memory,
    connect_line_client,
    connect_websocket,
    listen_on_loopback,
    listen_tls_on_loopback,
    make_certificate,
    temporary_directory,
    tls_client_endpoint,
)


def kinds(client: WebSocketClient) -> List[str]:
    return [m["type"] for m in client.messages]


def last(client: WebSocketClient, kind: str) -> Dict[str, Any]:
    return [m for m in client.messages if m["type"] == kind][-1]


class WebMemberTests(SynchronousTestCase):
    """
    A browser's WebSocket, in memory: a member of the same chat as the
    line clients.
    """

    def setUp(self) -> None:
        self.chat = ChatOnClock()

    def test_a_browser_is_welcomed_and_told_its_nick_and_room(self) -> None:
        client, server, pump = self.chat.browser()
        self.assertIn("notice", kinds(client))
        you = last(client, "you")
        self.assertEqual(you, {"type": "you", "nick": server.nick, "room": "lobby"})
        join = last(client, "join")
        self.assertEqual((join["nick"], join["room"]), (server.nick, "lobby"))

    def test_a_line_from_the_browser_reaches_a_line_client_and_back(self) -> None:
        client, server, pump = self.chat.browser()
        line, transport = self.chat.join()
        transport.clear()
        client.say("hello from the browser")
        pump.flush()
        self.assertIn(
            f"<{server.nick}> hello from the browser", transport.value().decode()
        )
        self.chat.send(line, "hello from nc")
        pump.flush()
        said = last(client, "message")
        self.assertEqual(
            (said["nick"], said["text"], said["room"]),
            (line.nick, "hello from nc", "lobby"),
        )
        self.assertEqual(said["ts"], self.chat.clock.seconds())

    def test_commands_nick_join_msg_from_the_browser(self) -> None:
        client, server, pump = self.chat.browser()
        line, transport = self.chat.join()
        client.say("/nick alice")
        pump.flush()
        self.assertEqual(last(client, "you")["nick"], "alice")
        client.say(f"/msg {line.nick} psst")
        pump.flush()
        self.assertIn("*alice* -> *", transport.value().decode())
        self.chat.send(line, "/msg alice hi back")
        pump.flush()
        private = last(client, "private")
        self.assertEqual((private["nick"], private["target"]), (line.nick, "alice"))
        client.say("/join #web")
        pump.flush()
        self.assertEqual(
            last(client, "you"), {"type": "you", "nick": "alice", "room": "web"}
        )

    def test_who_and_rooms_answer_as_values(self) -> None:
        client, server, pump = self.chat.browser()
        line, _ = self.chat.join()
        client.send(type="who")
        client.send(type="rooms")
        pump.flush()
        self.assertEqual(
            last(client, "who"),
            {"type": "who", "room": "lobby", "nicks": [server.nick, line.nick]},
        )
        self.assertEqual(
            last(client, "rooms"),
            {"type": "rooms", "rooms": [{"name": "lobby", "count": 2}]},
        )

    def test_history_comes_as_one_message(self) -> None:
        line, _ = self.chat.join()
        self.chat.send(line, "before you came")
        client, server, pump = self.chat.browser()
        history = last(client, "history")
        self.assertEqual(history["room"], "lobby")
        self.assertEqual(
            [(e["type"], e["text"]) for e in history["events"]],
            [("message", "before you came")],
        )

    def test_markup_is_sent_as_text(self) -> None:
        client, server, pump = self.chat.browser()
        client.say("<script>alert(1)</script>")
        pump.flush()
        self.assertEqual(last(client, "message")["text"], "<script>alert(1)</script>")


class BadInputTests(SynchronousTestCase):
    """
    Bad frames and messages get an error and lose nothing; protocol
    violations close with the right code; every one is logged with the
    peer's address.
    """

    def setUp(self) -> None:
        self.chat = ChatOnClock()
        self.client, self.server, self.pump = self.chat.browser()
        self.logged: List[str] = []
        self.patch(type(self.server), "log", _Recorder(self.logged))

    def stillServed(self) -> None:
        self.client.say("still here")
        self.pump.flush()
        self.assertEqual(last(self.client, "message")["text"], "still here")

    def assertErrorThenServed(self, text: str) -> None:
        self.pump.flush()
        self.assertIn(text, last(self.client, "error")["text"])
        self.stillServed()

    def test_binary_frame(self) -> None:
        self.client.sendBytes(b"\x00\x01")
        self.assertErrorThenServed("binary messages are not understood")

    def test_invalid_json(self) -> None:
        self.client.sendText("{nope")
        self.assertErrorThenServed("bad message: not JSON")
        self.assertIn("127.0.0.1:40000", " ".join(self.logged))

    def test_json_that_is_not_a_request(self) -> None:
        for text in ["[1, 2]", '"line"', '{"type": "launch"}', '{"text": "hi"}']:
            seen = len(self.client.messages)
            self.client.sendText(text)
            self.pump.flush()
            new = self.client.messages[seen:]
            errors = [m["text"] for m in new if m["type"] == "error"]
            self.assertEqual(len(errors), 1, text)
            self.assertIn("bad message: not a request", errors[0])
            self.stillServed()

    def test_text_that_is_not_a_string(self) -> None:
        self.client.send(type="line", text=42)
        self.assertErrorThenServed('"text" must be a string')

    def test_a_line_over_the_limit(self) -> None:
        self.client.say("x" * 600)
        self.assertErrorThenServed("line too long (600 bytes, limit 512)")

    def test_a_message_over_the_limit(self) -> None:
        self.client.sendText(json.dumps({"type": "line", "text": "y" * 2000}))
        self.assertErrorThenServed("message too long (2028 characters, limit 1280)")

    def test_a_huge_message_closes_with_1009(self) -> None:
        self.client.sendText("z" * (WebChatFactory(self.chat.factory).maxMessage * 17))
        self.pump.flush()
        self.assertEqual(self.client.closeCode, 1009)
        self.assertFalse(self.server.connected)

    def test_a_huge_binary_message_closes_with_1009(self) -> None:
        self.client.sendBytes(
            b"\0" * (WebChatFactory(self.chat.factory).maxMessage * 17)
        )
        self.pump.flush()
        self.assertEqual(self.client.closeCode, 1009)

    def test_invalid_utf8_closes_with_1007(self) -> None:
        self.client.transport.write(_masked_frame(0x81, b"\xff\xfe"))
        self.pump.flush()
        self.assertEqual(self.client.closeCode, 1007)
        self.assertFalse(self.server.connected)
        self.assertIn("127.0.0.1:40000", " ".join(self.logged))

    def test_others_are_still_served(self) -> None:
        other, _, otherPump = self.chat.browser()
        self.client.transport.write(_masked_frame(0x81, b"\xff\xfe"))
        self.pump.flush()
        other.say("and on we go")
        otherPump.flush()
        self.assertEqual(last(other, "message")["text"], "and on we go")

    def test_the_browser_closing_is_answered(self) -> None:
        self.client.transport.write(
            self.client.connection.send(CloseConnection(code=1000))
        )
        self.pump.flush()
        self.assertEqual(self.client.closeCode, 1000)
        self.assertFalse(self.server.connected)


class _Recorder:
    """
    A logger that keeps each event's text.
    """

    def __init__(self, lines: List[str]) -> None:
        self.lines = lines

    def __get__(self, instance: Any, owner: Any) -> "_Recorder":
        return self

    def _emit(self, format: str, **fields: Any) -> None:
        self.lines.append(format.format(**fields))

    info = warn = error = debug = _emit

    def failure(self, format: str, failure: Any = None, **fields: Any) -> None:
        self._emit(format, **fields)


def _masked_frame(opcode_byte: int, payload: bytes) -> bytes:
    """
    A client frame, masked (with a zero key), whatever its payload.
    """
    assert len(payload) < 126
    return bytes([opcode_byte, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


class LimitTests(SynchronousTestCase):
    """
    The line protocol's limits, applied to WebSocket messages.
    """

    def test_lines_over_the_rate_wait_then_all_arrive_in_order(self) -> None:
        chat = ChatOnClock(rateLimit=5)
        client, server, pump = chat.browser()
        line, transport = chat.join()
        for i in range(15):
            client.say(f"line {i}")
        pump.flush()
        self.assertIn("slow down", last(client, "notice")["text"])
        for _ in range(40):
            chat.clock.advance(0.1)
            pump.flush()
        said = [m["text"] for m in client.messages if m["type"] == "message"]
        self.assertEqual(said, [f"line {i}" for i in range(15)])

    def test_an_excess_flood_closes_with_1008(self) -> None:
        chat = ChatOnClock(rateLimit=5)
        client, server, pump = chat.browser()
        for i in range(200):
            client.say(f"flood {i} " + "x" * 100)
        pump.flush()
        self.assertEqual(client.closeCode, 1008)
        self.assertIn("excess flood", last(client, "error")["text"])

    def test_an_idle_browser_is_closed(self) -> None:
        chat = ChatOnClock(timeout=60)
        client, server, pump = chat.browser()
        chat.clock.advance(59)
        pump.flush()
        self.assertTrue(server.connected)
        client.send(type="who")  # any message counts as activity
        pump.flush()
        chat.clock.advance(59)
        pump.flush()
        self.assertTrue(server.connected)
        chat.clock.advance(2)
        pump.flush()
        self.assertFalse(server.connected)

    def test_a_browser_that_stops_reading_is_dropped(self) -> None:
        chat = ChatOnClock(maxOutput=2000)
        client, server, pump = chat.browser()
        line, _ = chat.join()
        pump.clientIO.pauseProducing()  # the tab stops reading
        server.transport.producer.pauseProducing()  # its buffer is full
        for i in range(40):
            chat.send(line, f"line {i} " + "x" * 100)
        self.assertTrue(server.transport.disconnected)
        self.assertEqual(chat.web().drops["slow_reader"], 1)

    def assertSecondRefused(self, status: int, **limits: int) -> None:
        """
        With C{limits}, a second browser's upgrade gets HTTP C{status}.
        """
        chat = ChatOnClock()
        chat.web(**limits)
        chat.browser()
        factory = Factory.forProtocol(lambda: WebSocketClient(clock=chat.clock))
        second, _, pump = connect_in_memory(chat.web(), factory, chat.clock)
        pump.flush()
        self.assertEqual(second.status, status)
        self.failureResultOf(second.opened, ConnectionError)

    def test_too_many_from_one_address_get_429(self) -> None:
        self.assertSecondRefused(429, maxPerPeer=1)

    def test_past_max_clients_get_503(self) -> None:
        self.assertSecondRefused(503, maxConnections=1)

    def test_the_server_stopping_says_so_and_closes_with_1001(self) -> None:
        chat = ChatOnClock()
        client, server, pump = chat.browser()
        chat.web().closeAll()
        pump.flush()
        self.assertEqual(last(client, "notice")["text"], "server shutting down")
        self.assertEqual(client.closeCode, 1001)


class OriginTests(SynchronousTestCase):
    """
    Only the page's own origin, and those allowed, may open the WebSocket.
    """

    def test_the_page_s_own_origin_is_accepted(self) -> None:
        client, server, pump = ChatOnClock().browser(origin="http://localhost")
        self.assertTrue(client.opened.called)
        self.assertIn("you", kinds(client))

    def test_another_origin_is_refused_with_403(self) -> None:
        client, server, pump = ChatOnClock().browser(origin="https://evil.example")
        self.failureResultOf(client.opened, ConnectionError)
        self.assertEqual(client.status, 403)
        self.assertEqual(server.session, None)

    def test_an_allowed_origin_is_accepted(self) -> None:
        chat = ChatOnClock()
        chat.web(origins=["https://chat.example.org/"])
        client, server, pump = chat.browser(origin="https://chat.example.org")
        self.assertIn("you", kinds(client))


class FramingTests(SynchronousTestCase):
    def test_text_frames_of_every_length_class(self) -> None:
        for size, header in [(5, b"\x81\x05"), (300, b"\x81\x7e\x01\x2c")]:
            self.assertEqual(text_frame(b"a" * size)[: len(header)], header)
        big = text_frame(b"b" * 70000)
        self.assertEqual(big[:10], b"\x81\x7f" + (70000).to_bytes(8, "big"))


class LoopbackTests(TestCase):
    """
    The page and the WebSocket over real loopback sockets, beside the line
    protocol.
    """

    @inlineCallbacks
    def setUp(self) -> Any:
        self.chat = ChatFactory(rateLimit=0)
        self.web = WebChatFactory(self.chat)
        self.lines = yield listen_on_loopback(self.chat)
        self.addCleanup(self.lines.stop)
        self.http = yield listen_on_loopback(self.web)
        self.addCleanup(self.http.stop)
        self.base = f"http://127.0.0.1:{self.http.portNumber}"

    @inlineCallbacks
    def get(self, path: str, method: bytes = b"GET") -> Any:
        response = yield Agent(reactor).request(method, (self.base + path).encode())
        body = yield readBody(response)
        return response, body

    @inlineCallbacks
    def test_the_page_and_its_files_with_security_headers(self) -> Any:
        for path, kind in [
            ("/", "text/html"),
            ("/chat.js", "text/javascript"),
            ("/chat.css", "text/css"),
        ]:
            response, body = yield self.get(path)
            self.assertEqual(response.code, 200, path)
            headers: Headers = response.headers
            self.assertIn(kind, headers.getRawHeaders("content-type")[0])
            csp = headers.getRawHeaders("content-security-policy")[0]
            self.assertIn("script-src 'self'", csp)
            self.assertNotIn("unsafe-inline", csp)
            self.assertEqual(
                headers.getRawHeaders("x-content-type-options"), ["nosniff"]
            )
            self.assertEqual(headers.getRawHeaders("referrer-policy"), ["no-referrer"])
        response, body = yield self.get("/")
        self.assertIn(b'<script src="chat.js"', body)
        self.assertNotIn(b"<script>", body)  # no inline script

    @inlineCallbacks
    def test_anything_else_is_404(self) -> Any:
        for path in ["/nope", "/chat.js/x", "/ws/x", "/static/", "/../", "//"]:
            response, body = yield self.get(path)
            self.assertEqual(response.code, 404, path)

    @inlineCallbacks
    def test_ws_without_a_handshake_is_400(self) -> Any:
        response, body = yield self.get("/ws")
        self.assertEqual(response.code, 400)
        self.assertIn(b"not a WebSocket handshake", body)

    @inlineCallbacks
    def test_a_browser_and_nc_talk_in_one_room(self) -> Any:
        browser = yield connect_websocket(
            self.http.endpoint(), origin=self.base, host=self.base[7:]
        )
        self.addCleanup(browser.transport.loseConnection)
        you = yield browser.expect("you")
        nc = yield connect_line_client(self.lines.endpoint())
        self.addCleanup(nc.transport.loseConnection)
        yield nc.expect("you are in #lobby")
        browser.say("/nick webby")
        yield nc.expect("is now known as webby")
        browser.say("hi from the browser")
        yield nc.expect("<webby> hi from the browser")
        nc.send("hi from nc")
        said = yield browser.expect("message", "hi from nc")
        self.assertEqual(said["room"], "lobby")
        self.assertNotEqual(you["nick"], "webby")


class HTTPSTests(TestCase):
    """
    C{--web ssl:...}: HTTPS and wss, for a client that offers ALPN as every
    browser does.
    """

    @inlineCallbacks
    def test_https_with_alpn_and_wss(self) -> Any:
        try:
            import OpenSSL  # noqa: F401
        except ImportError:
            raise SkipTest(
                "pyOpenSSL is missing: pip install 'sockproto[tls]'"
            ) from None
        cert, key = make_certificate(temporary_directory(self))
        web = WebChatFactory(ChatFactory(rateLimit=0))
        server = yield listen_tls_on_loopback(web, cert, key)
        self.addCleanup(server.stop)
        answer = yield deferToThread(_https_get, server.portNumber, cert)
        protocol, head = answer
        self.assertEqual(protocol, "http/1.1")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK"), head)
        browser = yield connect_websocket(
            tls_client_endpoint(server, cert),
            origin=f"https://localhost:{server.portNumber}",
            host=f"localhost:{server.portNumber}",
        )
        self.addCleanup(browser.transport.loseConnection)
        yield browser.expect("you")


def _https_get(port: int, cert: str) -> Any:
    """
    GET / over TLS, offering h2 and http/1.1 with ALPN, as a browser does.
    """
    import socket
    import ssl

    context = ssl.create_default_context(cafile=cert)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(
                b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            )
            head = tls.recv(100)
            return tls.selected_alpn_protocol(), head


class JsonTests(SynchronousTestCase):
    """
    Every malformed JSON message gets one error event, and the session
    answers the next message as if nothing had happened.
    """

    def setUp(self) -> None:
        self.chat = ChatOnClock()
        self.client, self.server, self.pump = self.chat.browser()

    def assertOneErrorThenServed(self, text: str, why: str) -> None:
        seen = len(self.client.messages)
        self.client.sendText(text)
        self.pump.flush()
        errors = [
            m["text"] for m in self.client.messages[seen:] if m["type"] == "error"
        ]
        self.assertEqual(len(errors), 1, (text[:40], errors))
        self.assertIn(why, errors[0])
        self.client.say(f"after {text[:10]!r}")
        self.pump.flush()
        self.assertEqual(last(self.client, "message")["text"], f"after {text[:10]!r}")
        self.assertTrue(self.server.connected)

    def test_deep_nesting(self) -> None:
        for opening, closing in [("[", "]"), ('{"a":', "}")]:
            text = opening * 200 + "1" + closing * 200
            self.assertOneErrorThenServed(text, "nested over")

    def test_deep_nesting_inside_a_request(self) -> None:
        self.assertOneErrorThenServed(
            '{"type": "line", "text": "x", "extra": ' + "[" * 400 + "]" * 400 + "}",
            "nested over",
        )

    def test_brackets_in_strings_are_text(self) -> None:
        self.client.say("[[[[[[[[{{{{{{{{")
        self.pump.flush()
        self.assertEqual(last(self.client, "message")["text"], "[[[[[[[[{{{{{{{{")

    def test_huge_numbers(self) -> None:
        self.assertOneErrorThenServed(
            '{"type": "line", "text": ' + "9" * 1000 + "}", "number over"
        )
        self.assertOneErrorThenServed('{"type": "line", "n": 1e99999}', "out of range")

    def test_nan_and_infinity(self) -> None:
        for constant in ["NaN", "Infinity", "-Infinity"]:
            self.assertOneErrorThenServed(
                '{"type": "line", "text": ' + constant + "}", "is not JSON"
            )

    def test_duplicate_keys(self) -> None:
        self.assertOneErrorThenServed(
            '{"type": "line", "text": "a", "text": "b"}', "duplicate key"
        )

    def test_a_type_with_nul(self) -> None:
        self.assertOneErrorThenServed('{"type": "line\\u0000"}', "not a request")

    def test_a_text_that_is_not_a_string(self) -> None:
        for value in ["42", "null", "[]", "{}", "true"]:
            self.assertOneErrorThenServed(
                '{"type": "line", "text": ' + value + "}", '"text" must be a string'
            )

    def test_lone_surrogates(self) -> None:
        self.assertOneErrorThenServed(
            '{"type": "line", "text": "a\\ud800b"}', "lone surrogate"
        )
        self.assertOneErrorThenServed(
            '{"type": "line", "\\udfff": 1}', "lone surrogate"
        )

    def test_a_failing_command_does_not_stall_the_queue(self) -> None:
        def broken(argument: str) -> None:
            raise RuntimeError("a bug")

        self.server.command_broken = broken  # a command of this front end
        self.client.say("/broken")
        self.client.say("next")
        self.pump.flush()
        self.assertIn("try again", last(self.client, "error")["text"])
        self.assertEqual(last(self.client, "message")["text"], "next")


def _frames(client: WebSocketClient, *events: Any) -> bytes:
    return b"".join(client.connection.send(event) for event in events)


class ControlFrameTests(SynchronousTestCase):
    """
    Pings and fragments cost what lines cost: the rate limit and the bound
    on unread output apply to them.
    """

    def test_pongs_count_against_the_unread_output(self) -> None:
        from wsproto.events import Ping

        chat = ChatOnClock(maxOutput=2000, rateLimit=0)
        client, server, pump = chat.browser()
        pump.clientIO.pauseProducing()  # the client stops reading
        server.transport.producer.pauseProducing()  # its buffer is full
        client.transport.write(_frames(client, *[Ping(b"p" * 100)] * 100))
        pump.flush()
        self.assertTrue(server.transport.disconnected)
        self.assertEqual(chat.web().drops["slow_reader"], 1)

    def test_pings_wait_for_the_rate_limit_as_lines_do(self) -> None:
        from wsproto.events import Ping

        chat = ChatOnClock(rateLimit=5)
        client, server, pump = chat.browser()
        client.transport.write(_frames(client, *[Ping(b"%d" % i) for i in range(15)]))
        pump.flush()
        self.assertIn("slow down", last(client, "notice")["text"])

    def test_a_ping_flood_is_an_excess_flood(self) -> None:
        from wsproto.events import Ping

        chat = ChatOnClock(rateLimit=5)
        client, server, pump = chat.browser()
        client.transport.write(_frames(client, *[Ping(b"x" * 100)] * 500))
        pump.flush()
        self.assertEqual(client.closeCode, 1008)
        self.assertEqual(chat.web().drops["overflow"], 1)

    def test_a_flood_of_tiny_fragments_is_an_excess_flood(self) -> None:
        from wsproto.events import TextMessage

        chat = ChatOnClock(rateLimit=5)
        client, server, pump = chat.browser()
        parts = [TextMessage("x", message_finished=(i % 30 == 29)) for i in range(6000)]
        client.transport.write(_frames(client, *parts))
        pump.flush()
        self.assertEqual(client.closeCode, 1008)
        self.assertIn("excess flood", last(client, "error")["text"])

    def test_a_message_in_too_many_frames_closes_with_1009(self) -> None:
        from wsproto.events import TextMessage

        chat = ChatOnClock(rateLimit=0)
        client, server, pump = chat.browser()
        count = server.maxFragments + 1
        parts = [TextMessage("x", message_finished=False) for i in range(count)]
        client.transport.write(_frames(client, *parts))
        pump.flush()
        self.assertEqual(client.closeCode, 1009)
        self.assertIn("frames", last(client, "error")["text"])

    def test_a_message_in_few_frames_arrives(self) -> None:
        from wsproto.events import TextMessage

        chat = ChatOnClock()
        client, server, pump = chat.browser()
        text = json.dumps({"type": "line", "text": "in pieces"})
        parts = [TextMessage(text[:10], message_finished=False), TextMessage(text[10:])]
        client.transport.write(_frames(client, *parts))
        pump.flush()
        self.assertEqual(last(client, "message")["text"], "in pieces")

    def test_an_unfinished_message_closes_at_its_deadline(self) -> None:
        from wsproto.events import TextMessage

        chat = ChatOnClock(timeout=3600)
        client, server, pump = chat.browser()
        client.transport.write(
            _frames(client, TextMessage("{", message_finished=False))
        )
        pump.flush()
        chat.clock.advance(server.messageTimeout - 1)
        pump.flush()
        self.assertTrue(server.connected)
        chat.clock.advance(2)
        pump.flush()
        self.assertEqual(client.closeCode, 1008)
        self.assertIn("not finished", last(client, "error")["text"])


class ClosingTests(SynchronousTestCase):
    def test_the_close_frame_is_sent_and_the_client_s_awaited(self) -> None:
        chat = ChatOnClock()
        client, server, pump = chat.browser()
        received: List[bytes] = []
        client.dataReceived = received.append  # never answers
        server.overflow()
        pump.flush()
        self.assertTrue(server.connected)
        self.assertFalse(server.transport.disconnecting)
        self.assertIn(b"\x88\x02\x03\xf1", b"".join(received))  # close, 1009
        chat.clock.advance(server.lingerTime)
        self.assertTrue(server.transport.disconnecting)

    def test_the_client_s_close_frame_ends_the_linger(self) -> None:
        chat = ChatOnClock()
        client, server, pump = chat.browser()
        server.overflow()
        pump.flush()
        self.assertEqual(client.closeCode, 1009)
        self.assertFalse(server.connected)

    def test_data_after_the_close_frame_is_not_parsed_without_end(self) -> None:
        from wsproto.events import TextMessage

        chat = ChatOnClock(rateLimit=0)
        client, server, pump = chat.browser()
        client.dataReceived = lambda data: None
        server.overflow()
        said = []
        self.patch(server, "lineReceived", said.append)
        client.transport.write(_frames(client, *[TextMessage("x")] * 200))
        pump.flush()
        self.assertEqual(said, [])
        chat.clock.advance(server.lingerTime)
        self.assertTrue(server.transport.disconnecting)

    def test_application_close_codes_are_logged_as_such(self) -> None:
        chat = ChatOnClock()
        client, server, pump = chat.browser()
        logged: List[str] = []
        self.patch(type(server), "log", _Recorder(logged))
        client.transport.write(
            client.connection.send(CloseConnection(code=4001, reason="bye"))
        )
        pump.flush()
        self.assertEqual(logged, ["web: 127.0.0.1:40000 closed with code 4001: bye"])


class _Fragmenter(Protocol):
    """
    Opens the WebSocket by hand, then sends one endless message in 1 KB
    frames, as Autobahn's case 9.6.5 does; it reads nothing for its first
    half second (a busy client), and stops sending once the close frame is
    there.  A server that closed at once, with unread data, would reset
    the connection, and the close frame would be lost unread.
    """

    transport: Any

    def __init__(self) -> None:
        from twisted.internet.defer import Deferred

        self.received = b""
        self.lost: Deferred[Any] = Deferred()
        self.upgraded = False
        self.sending: Any = None

    def connectionMade(self) -> None:
        self.transport.write(
            b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if not self.upgraded and b"\r\n\r\n" in self.received:
            self.upgraded = True
            self.received = self.received.split(b"\r\n\r\n", 1)[1]
            from twisted.internet.task import LoopingCall

            self.first = True
            self.sending = LoopingCall(self.sendSome)
            self.sending.start(0.001)
            self.transport.pauseProducing()
            reactor.callLater(0.5, self.transport.resumeProducing)
        if b"\x88" in self.received and self.sending.running:
            self.sending.stop()

    def sendSome(self) -> None:
        for _ in range(8):
            opcode = 0x01 if self.first else 0x00
            self.first = False
            header = bytes([opcode, 0x80 | 126]) + (1024).to_bytes(2, "big")
            self.transport.write(header + b"\0\0\0\0" + b"a" * 1024)

    def connectionLost(self, reason: Any = None) -> None:
        if self.sending is not None and self.sending.running:
            self.sending.stop()
        self.reason = reason
        self.lost.callback(None)


class DrainTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_an_over_cap_message_in_fragments_gets_the_close_frame(self) -> Any:
        from twisted.internet.endpoints import connectProtocol

        chat = ChatFactory(rateLimit=0)
        server = yield listen_on_loopback(WebChatFactory(chat))
        self.addCleanup(server.stop)
        client = _Fragmenter()
        yield connectProtocol(server.endpoint(), client)
        yield client.lost
        # The error message, then the close frame, 1009: read before the end.
        self.assertIn(b"\x88\x02\x03\xf1", client.received)
