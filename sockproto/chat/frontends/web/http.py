# -*- test-case-name: tests.test_chat_web -*-
"""
The web front end's HTTP side, until a connection becomes a WebSocket: the
site (the page, its files and C{/ws}), the channel with its limits, and
the WebSocket handshake.

The page and C{/ws} need no request body and small heads, so the channel
is stricter than L{twisted.web}'s defaults, and answers every refusal with
its HTTP status before closing:

    - a request with a body (C{Content-Length} over 0, or
      C{Transfer-Encoding}) is refused before its body is read: 413, 411
      (Twisted would spool any body to a temporary file first);
    - a request line over L{WebChannel.maxLine} bytes: 414; a header line
      that long, a head over L{WebChannel.maxHeadSize} bytes or over
      L{WebChannel.maxHeaders} headers: 431;
    - a head not complete L{WebChannel.headDeadline} seconds after its
      first byte: 408, however the bytes trickle in (slowloris);
    - HTTP/1.1 without C{Host}, or with two: 400 (RFC 9112 3.2); a C{Host}
      that is not one of the server's names: 421, so that a page of
      another site cannot reach the chat by DNS rebinding.
"""

import base64
import socket
from importlib.resources import files
from typing import Any, Iterable, Optional, Sequence, Set, Tuple

from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES, HTTPChannel
from twisted.web.pages import notFound
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from wsproto.connection import ConnectionType
from wsproto.events import AcceptConnection
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

from ....text import escape_for_log

__all__ = [
    "HEADERS",
    "WebChannel",
    "WebRequest",
    "WebSocketResource",
    "build_site",
    "host_name",
    "http_response",
]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
    " img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    b"content-security-policy": CSP.encode(),
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    b"x-frame-options": b"DENY",
    b"cache-control": b"no-cache",
}

WEBSOCKET_VERSION = "13"
"""The only WebSocket version there is (RFC 6455)."""


def http_response(
    code: int, text: str, headers: Iterable[Tuple[str, str]] = ()
) -> bytes:
    """
    A whole HTTP/1.1 answer with status C{code} and the one line C{text},
    that closes the connection.
    """
    body = (text + "\n").encode("utf-8")
    reason = RESPONSES.get(code, b"Error").decode("ascii")
    lines = [
        f"HTTP/1.1 {code} {reason}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def host_name(value: str) -> Optional[str]:
    """
    The name in a C{Host} header (C{example.org:8080}, C{[::1]:80}),
    lower-cased, or None if the header is not a host and port.
    """
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, port = value[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            return None
        port = port[1:]
    else:
        name, _, port = value.partition(":")
    if not name or (port and not port.isdigit()):
        return None
    if any(c in name for c in " \t/\\@?#%,;\"'<>"):
        return None
    return name


class WebChannel(HTTPChannel):
    """
    The HTTP side of a web connection, until it becomes a WebSocket; see
    the module's docstring for its limits.

    @ivar chat: the connection's L{WebChatProtocol}.
    @ivar refused: True once a request was refused: nothing more is read.
    """

    chat: Any
    maxLine = 16384
    """The longest request line or header line, in bytes."""
    maxHeadSize = 32768
    """The most bytes of a request's head (its line and headers)."""
    maxHeaders = 100
    """The most header lines a request may have."""
    headDeadline = 20.0
    """Seconds from a request's first byte to the end of its head."""
    MAX_LENGTH = maxLine
    totalHeadersSize = maxHeadSize + 1  # Twisted's 400: ours comes first

    refused = False
    _headSize = 0
    _headLines = 0
    _deadline: Optional[IDelayedCall] = None

    def dataReceived(self, data: bytes) -> None:
        if self.refused:
            return
        if self._deadline is None:
            self._deadline = self.chat.callLater(self.headDeadline, self.tooSlow)
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if self.refused:
            return
        self._headSize += len(line)
        self._headLines += 1
        if self._headSize > self.maxHeadSize:
            return self.refuse(431, "request header fields too large")
        if self._headLines > self.maxHeaders + 1:
            return self.refuse(431, f"more than {self.maxHeaders} header fields")
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        if self._headLines == 0:
            return self.refuse(414, f"request line over {self.maxLine} bytes")
        self.refuse(431, f"header line over {self.maxLine} bytes")

    def allHeadersReceived(self) -> None:
        self._cancelDeadline()
        self._headSize = self._headLines = 0
        if self.length is None:
            return self.refuse(411, "this server takes no request body")
        if self.length:
            return self.refuse(413, "this server takes no request body")
        super().allHeadersReceived()

    def rawDataReceived(self, data: bytes) -> None:
        if not self.refused:
            super().rawDataReceived(data)

    def tooSlow(self) -> None:
        """
        Called when a request's head is not complete in time: 408.
        """
        self._deadline = None
        self.refuse(408, f"request not complete in {self.headDeadline:g} seconds")

    def refuse(self, code: int, text: str) -> None:
        """
        Answer C{code} with C{text}, log it, and close: nothing more is
        read from this connection.
        """
        if self.refused:
            return
        self.refused = True
        self._cancelDeadline()
        self.chat.log.info(
            "web: refused a request from {peer}: {code} {text}",
            peer=self.chat.peer,
            code=code,
            text=text,
        )
        self.chat.send(http_response(code, text))
        self.loseConnection()
        self.chat.closeConnection()

    def upgraded(self) -> None:
        """
        The connection is a WebSocket now: no HTTP timer runs any more.
        """
        self._cancelDeadline()
        self.setTimeout(None)

    def _cancelDeadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        self._cancelDeadline()
        super().connectionLost(reason)


class WebRequest(Request):
    """
    A request whose every answer carries the security headers, and whose
    C{Host} must be one of the server's names.
    """

    channel: WebChannel

    def process(self) -> None:
        for name, value in HEADERS.items():
            self.setHeader(name, value)
        problem = self.hostProblem()
        if problem is not None:
            code, text = problem
            chat = self.channel.chat
            chat.log.info(
                "web: refused a request from {peer}: {code} {text}",
                peer=chat.peer,
                code=code,
                text=escape_for_log(text),
            )
            self.setResponseCode(code)
            self.setHeader(b"content-type", b"text/plain; charset=utf-8")
            self.setHeader(b"connection", b"close")
            self.channel.persistent = False  # closed once answered
            self.write((text + "\n").encode("utf-8"))
            self.finish()
            return
        super().process()

    def hostProblem(self) -> Optional[Tuple[int, str]]:
        """
        Why the request's C{Host} is refused (its status and a line), or
        None when it names this server.
        """
        hosts = self.requestHeaders.getRawHeaders(b"host") or []
        if len(hosts) > 1:
            return 400, "more than one Host header"
        if not hosts:
            if self.clientproto == b"HTTP/1.1":
                return 400, "an HTTP/1.1 request needs a Host header"
            return None
        name = host_name(hosts[0].decode("latin-1"))
        if name is None:
            return 400, "the Host header is not a host name"
        if name not in self.channel.chat.factory.hostNames(self.getHost()):
            return 421, f"this server does not answer for {name} (see --web-host)"
        return None


def server_names(local: Any, extra: Iterable[str]) -> Set[str]:
    """
    The names a request's C{Host} may give for a server reached at the
    local address C{local}: that address, C{localhost}, this machine's
    name and C{extra} (C{--web-host}).
    """
    names = {"localhost", socket.gethostname().lower()}
    names.update(name.lower() for name in extra)
    host = getattr(local, "host", None)
    if isinstance(host, str):
        names.add(host.split("%", 1)[0].lower())
        if host.startswith("::ffff:"):
            names.add(host[len("::ffff:") :])
    return names


class Folder(Resource):
    """
    A resource whose unknown children are 404 (escaped, unlike Twisted's
    default).
    """

    def getChild(self, path: bytes, request: Request) -> Resource:
        return notFound()  # type: ignore[return-value]


class Asset(Folder):
    """
    A file of the page, from the package: C{GET} (and C{HEAD}) only.
    """

    def __init__(self, name: str, contentType: bytes) -> None:
        super().__init__()
        self.data = files(__package__).joinpath("static", name).read_bytes()
        self.contentType = contentType

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", self.contentType)
        return self.data


class WebSocketResource(Resource):
    """
    C{/ws}: upgrade the connection to a WebSocket, if the request comes from
    an allowed origin and is a WebSocket handshake as RFC 6455 4.2.1 says.
    """

    isLeaf = True

    def __init__(self, origins: Sequence[str]) -> None:
        super().__init__()
        self.origins = {origin.rstrip("/").lower() for origin in origins}

    def render_GET(self, request: WebRequest) -> Any:
        chat = request.channel.chat
        if request.postpath:
            return self.refuse(request, 404, "no such page")
        if not self.allowed(request):
            origin = (request.getHeader("origin") or "").strip()
            chat.log.warn(
                "web: refused a WebSocket from {peer}: origin {origin} not allowed",
                peer=chat.peer,
                origin=escape_for_log(origin),
            )
            return self.refuse(request, 403, "this origin may not use the chat")
        version = request.getHeader("sec-websocket-version")
        if version is not None and version.strip() != WEBSOCKET_VERSION:
            request.setHeader(b"sec-websocket-version", WEBSOCKET_VERSION.encode())
            return self.refuse(
                request, 426, f"only WebSocket version {WEBSOCKET_VERSION} is spoken"
            )
        key = request.getHeader("sec-websocket-key")
        if key is not None and not valid_key(key):
            return self.refuse(
                request, 400, "Sec-WebSocket-Key is not 16 bytes in base64"
            )
        handshake = H11Handshake(ConnectionType.SERVER)
        headers = [
            (name, value)
            for name, values in request.requestHeaders.getAllRawHeaders()
            for value in values
        ]
        try:
            handshake.initiate_upgrade_connection(headers, request.uri)
        except RemoteProtocolError as e:
            return self.refuse(request, 400, f"not a WebSocket handshake: {e}")
        accept = handshake.send(AcceptConnection())
        assert handshake.connection is not None
        request.channel.upgraded()
        chat.upgrade(handshake.connection, accept)
        return NOT_DONE_YET

    def allowed(self, request: Request) -> bool:
        """
        Whether the request's C{Origin} is the page's own, or allowed by
        C{--web-origin}.  A request without one is not from a browser page
        (a bot): nobody's browser can be made to send it.
        """
        origin = request.getHeader("origin")
        if origin is None:
            return True
        origin = origin.strip().rstrip("/").lower()
        scheme = "https" if request.isSecure() else "http"
        host = (request.getHeader("host") or "").strip().lower()
        return origin == f"{scheme}://{host}" or origin in self.origins

    @staticmethod
    def refuse(request: Request, code: int, text: str) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return (text + "\n").encode("utf-8")


def valid_key(key: str) -> bool:
    """
    Whether C{key} is a C{Sec-WebSocket-Key}: 16 bytes in base64.
    """
    try:
        return len(base64.b64decode(key.strip(), validate=True)) == 16
    except ValueError:
        return False


def build_site(origins: Sequence[str], timeout: float, clock: Any) -> Site:
    """
    The page, its files and C{/ws}; anything else is 404.
    """
    root = Folder()
    root.putChild(b"", Asset("index.html", b"text/html; charset=utf-8"))
    root.putChild(b"chat.js", Asset("chat.js", b"text/javascript; charset=utf-8"))
    root.putChild(b"chat.css", Asset("chat.css", b"text/css; charset=utf-8"))
    root.putChild(b"favicon.svg", Asset("favicon.svg", b"image/svg+xml"))
    root.putChild(b"ws", WebSocketResource(origins))
    site = Site(root, timeout=timeout, reactor=clock)
    site.protocol = WebChannel  # type: ignore[assignment]
    site.requestFactory = WebRequest
    site.displayTracebacks = False
    site.noisy = False
    return site
