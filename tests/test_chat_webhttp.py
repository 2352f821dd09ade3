"""
The web port's HTTP side before the upgrade: no request body is read,
heads are bounded in size, count and time, C{Host} must name the server,
and the WebSocket handshake is checked as RFC 6455 4.2 says.  Each refusal
is an HTTP status, in memory on a Clock.
"""

from typing import Any, List

from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SynchronousTestCase

from sockproto.chat.frontends.web.http import WebChannel, host_name, http_response
from sockproto.testing import ChatOnClock, connect_in_memory

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's example: 16 bytes


class RawClient(Protocol):
    """
    Writes what it is told, keeps what comes back.
    """

    transport: Any

    def __init__(self) -> None:
        self.received = b""
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = True


def websocket_request(host: str = "localhost", **headers: str) -> bytes:
    fields = {
        "Host": host,
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    }
    fields.update({k.replace("_", "-"): v for k, v in headers.items()})
    lines = ["GET /ws HTTP/1.1"] + [f"{k}: {v}" for k, v in fields.items() if v]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class HttpTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.chat = ChatOnClock()
        self.logged: List[str] = []

    def connect(self, **web: Any) -> Any:
        factory = self.chat.web(**web)
        client, server, pump = connect_in_memory(
            factory, Factory.forProtocol(RawClient), self.chat.clock
        )
        return client, server, pump

    def request(self, data: bytes, **web: Any) -> Any:
        client, server, pump = self.connect(**web)
        client.transport.write(data)
        pump.flush()
        return client, server

    def assertStatus(self, client: RawClient, status: int, text: str = "") -> None:
        head = client.received.split(b"\r\n", 1)[0].decode()
        self.assertIn(head.split(" ")[0], ("HTTP/1.0", "HTTP/1.1"), client.received)
        self.assertEqual(head.split(" ")[1], str(status), client.received)
        if text:
            self.assertIn(text, client.received.decode())

    def assertRefused(
        self, data: bytes, status: int, text: str = "", closed: bool = True
    ) -> RawClient:
        client, server = self.request(data)
        self.assertStatus(client, status, text)
        if closed:
            self.assertTrue(server.transport.disconnecting or not server.connected)
        return client

    def test_the_page_is_served(self) -> None:
        client, server = self.request(b"GET / HTTP/1.1\r\nHost: localhost:8080\r\n\r\n")
        self.assertStatus(client, 200)

    def test_a_request_body_is_refused_before_it_is_read(self) -> None:
        client, server = self.request(
            b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 500000000\r\n\r\n"
            + b"x" * 100000
        )
        self.assertStatus(client, 413, "this server takes no request body")
        self.assertTrue(server.transport.disconnecting)
        # No Request was given the length, so none made a file for the body.
        self.assertEqual(
            [r for r in server.channel.requests if r.content is not None], []
        )

    def test_a_chunked_body_is_refused(self) -> None:
        self.assertRefused(
            b"POST /ws HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
            b"\r\n5\r\nhello\r\n",
            411,
        )

    def test_an_empty_body_is_fine(self) -> None:
        client, server = self.request(
            b"GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
        )
        self.assertStatus(client, 200)

    def test_a_20_kb_header_line_gets_431(self) -> None:
        self.assertRefused(
            b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: "
            + b"a" * 20000
            + b"\r\n\r\n",
            431,
        )

    def test_a_1_mb_header_block_gets_431(self) -> None:
        headers = b"".join(b"X-%d: %s\r\n" % (i, b"b" * 1000) for i in range(1000))
        self.assertRefused(b"GET / HTTP/1.1\r\nHost: localhost\r\n" + headers, 431)

    def test_too_many_headers_get_431(self) -> None:
        headers = b"".join(b"X-%d: 1\r\n" % i for i in range(WebChannel.maxHeaders + 1))
        self.assertRefused(
            b"GET / HTTP/1.1\r\nHost: localhost\r\n" + headers + b"\r\n", 431
        )

    def test_a_long_request_line_gets_414(self) -> None:
        self.assertRefused(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n", 414)

    def test_a_trickled_head_gets_408_at_the_deadline(self) -> None:
        client, server, pump = self.connect()
        head = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
        for byte in head:
            client.transport.write(bytes([byte]))
            pump.flush()
            self.chat.clock.advance(WebChannel.headDeadline / len(head) * 0.9)
        self.assertEqual(client.received, b"")
        self.chat.clock.advance(WebChannel.headDeadline)
        pump.flush()
        self.assertStatus(client, 408)
        self.assertTrue(server.transport.disconnecting)

    def test_each_request_of_a_kept_alive_connection_has_its_own_deadline(
        self,
    ) -> None:
        client, server, pump = self.connect()
        for _ in range(3):
            client.transport.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            pump.flush()
            self.chat.clock.advance(WebChannel.headDeadline * 0.9)
        self.assertEqual(client.received.count(b"HTTP/1.1 200"), 3)
        self.assertFalse(server.transport.disconnecting)

    def test_http_1_1_without_host_gets_400(self) -> None:
        self.assertRefused(b"GET / HTTP/1.1\r\n\r\n", 400, "needs a Host")

    def test_two_hosts_get_400(self) -> None:
        self.assertRefused(
            b"GET / HTTP/1.1\r\nHost: localhost\r\nHost: localhost\r\n\r\n", 400
        )

    def test_http_1_0_without_host_is_served(self) -> None:
        client, server = self.request(b"GET / HTTP/1.0\r\n\r\n")
        self.assertStatus(client, 200)

    def test_a_rebinding_host_and_origin_that_agree_get_421(self) -> None:
        client = self.assertRefused(
            websocket_request("evil.example:8080", Origin="http://evil.example:8080"),
            421,
            "does not answer for evil.example",
        )
        self.assertNotIn(b"101", client.received.split(b"\r\n")[0])
        self.assertEqual(self.chat.factory.server.getRoom("lobby").memberNicks(), [])

    def test_the_server_s_address_localhost_and_web_host_are_answered(self) -> None:
        for host in ["127.0.0.1:8080", "localhost", "LOCALHOST:1", "chat.example.org"]:
            self.chat = ChatOnClock()
            client, server = self.request(
                f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(),
                hosts=["chat.example.org"],
            )
            self.assertStatus(client, 200)

    def test_a_websocket_of_another_version_gets_426(self) -> None:
        client = self.assertRefused(
            websocket_request(Sec_WebSocket_Version="8"), 426, closed=False
        )
        self.assertIn(b"sec-websocket-version: 13", client.received.lower())

    def test_a_key_that_is_not_16_bytes_of_base64_gets_400(self) -> None:
        for key in ["not base64!", "c2hvcnQ=", "dGhlIHNhbXBsZSBub25jZQ==AA"]:
            self.chat = ChatOnClock()
            client, server = self.request(websocket_request(Sec_WebSocket_Key=key))
            self.assertStatus(client, 400)

    def test_a_right_handshake_is_upgraded(self) -> None:
        client, server = self.request(websocket_request())
        self.assertStatus(client, 101)


class HostNameTests(SynchronousTestCase):
    def test_names(self) -> None:
        self.assertEqual(host_name("Example.org:8080"), "example.org")
        self.assertEqual(host_name("[::1]:80"), "::1")
        self.assertEqual(host_name("[::1]"), "::1")
        self.assertEqual(host_name("127.0.0.1"), "127.0.0.1")
        for bad in ["", ":80", "a b", "x:y", "[::1", "[::1]x", "user@host"]:
            self.assertIsNone(host_name(bad), bad)

    def test_response(self) -> None:
        response = http_response(413, "no body")
        self.assertTrue(response.startswith(b"HTTP/1.1 413 Request Entity Too Large"))
        self.assertTrue(response.endswith(b"\r\n\r\nno body\n"))
