# -*- test-case-name: tests.test_chat_web -*-
"""
The chat's web front end: one page, and a WebSocket at C{/ws} that speaks
JSON, in the same rooms as the line clients.

Each connection to a C{--web} port starts as HTTP (a L{twisted.web}
L{Site} serves the page and its two files); a request for C{/ws} that
comes from the page's own origin is upgraded to a WebSocket (RFC 6455,
framed by wsproto), and from then on the connection is a chat client like
any other: a L{WebChatProtocol} is a L{ChatProtocol} whose wire is JSON in
WebSocket frames instead of lines.  The session, the rooms, the rate limit,
the idle timeout and the bound on unread output are the same objects.

Messages from the browser (one JSON object per text message)::

    {"type": "line", "text": "hello"}       a line, or a /command
    {"type": "who"}                         who is in my room?
    {"type": "rooms"}                       which rooms are there?

Messages from the server: every room event as
C{{"type": KIND, "room", "nick", "text", "target", "ts"}} (KIND one of
message, action, join, leave, nick, private), and C{notice}, C{error},
C{history}, C{who}, C{rooms} and C{you} (your nickname and room, whenever
either changes).
"""

import json
import struct
from importlib.resources import files
from typing import Any, Dict, List, Optional, Sequence, Set, Union

from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.pages import notFound
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    TextMessage,
)
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError
from zope.interface import implementer

from ..lines import LineTooLong, Overflow
from ..text import sanitize
from .events import JOIN, LEAVE, NICK, ChatEvent, EventBatch
from .interfaces import ChatError
from .protocol import ChatFactory, ChatProtocol, FrontEndFactory

__all__ = ["WebChatFactory", "WebChatProtocol", "event_json", "text_frame"]

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

BINARY = object()
"""A binary message, among the text messages: answered with an error."""

# Close codes (RFC 6455, 7.4.1).
MOVES = frozenset([JOIN, LEAVE, NICK])
"""The kinds of event after which a member's nickname or room may differ."""
GOING_AWAY = 1001
POLICY_VIOLATION = 1008
TOO_BIG = 1009


def text_frame(payload: bytes) -> bytes:
    """
    One unfragmented, unmasked WebSocket text frame (a server's): the same
    bytes for every client, so a room's batch is framed once for all.
    """
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


def message(**fields: Any) -> bytes:
    """
    One JSON message, framed.
    """
    return text_frame(json.dumps(fields, ensure_ascii=False).encode("utf-8"))


def event_json(event: ChatEvent) -> Dict[str, Any]:
    """
    A room event (or a private message) as the JSON the browser gets.
    """
    fields = {"type": event.kind, "room": event.room, "nick": event.nick}
    fields["text"] = event.text
    if event.target:
        fields["target"] = event.target
    return fields


class WebChannel(HTTPChannel):
    """
    The HTTP side of a web connection, until it becomes a WebSocket.

    @ivar chat: the connection's L{WebChatProtocol}.
    """

    chat: "WebChatProtocol"


class WebRequest(Request):
    """
    A request whose every answer carries the security headers.
    """

    channel: WebChannel

    def process(self) -> None:
        for name, value in HEADERS.items():
            self.setHeader(name, value)
        super().process()


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
    an allowed origin.
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
                origin=origin,
            )
            return self.refuse(request, 403, "this origin may not use the chat")
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


class WebChatProtocol(ChatProtocol):
    """
    A connection to a C{--web} port: HTTP until the page opens its
    WebSocket, then a chat client that speaks JSON.

    A text message is a "line" for the line protocol's machinery: the rate
    limit, the queue, the idle timer.  One over L{WebChatFactory.maxMessage}
    bytes is answered with an error; one more than L{unterminatedFactor}
    times that closes the connection (1009).
    """

    factory: "WebChatFactory"
    channel: Optional[WebChannel] = None
    websocket: Optional[Connection] = None
    closeCode = 1000
    _you = ("", "")
    _parts: Optional[List[str]] = None
    _partSize = 0

    def connectionMade(self) -> None:
        # The HTTP channel registers as the producer until the upgrade.
        super(ChatProtocol, self).connectionMade()

    def connectionReady(self) -> None:
        self.channel = channel = self.factory.site.buildProtocol(
            self.transport.getPeer()
        )
        channel.chat = self
        channel.makeConnection(self.transport)

    def upgrade(self, websocket: Connection, accept: bytes) -> None:
        """
        The request for C{/ws} was accepted: send C{accept} (the 101
        answer), and from now on speak WebSocket, as a chat client.
        """
        self.websocket = websocket
        self.transport.unregisterProducer()  # the HTTP channel's
        self.watchOutput()
        self.send(accept)
        super().connectionReady()

    # --- input ------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.websocket is None:
            if self.channel is not None:
                self.factory.stats.bytesIn += len(data)
                self.channel.dataReceived(data)
            return
        self.factory.stats.bytesIn += len(data)
        self.websocket.receive_data(data)
        events: List[Any] = []
        for event in self.websocket.events():
            self.websocketEvent(event, events)
        self.handleEvents(events)

    def websocketEvent(self, event: Event, messages: List[Any]) -> None:
        """
        Handle one wsproto event; a complete message goes to C{messages}
        (its UTF-8, or a L{LineTooLong} or L{Overflow}).
        """
        if isinstance(event, (TextMessage, BytesMessage)):
            self.messagePart(event, messages)
        elif isinstance(event, Ping):
            self.send(self.websocket.send(event.response()))  # type: ignore
        elif isinstance(event, CloseConnection):
            self.peerClosed(event)

    def messagePart(
        self, event: Union[TextMessage, BytesMessage], messages: List[Any]
    ) -> None:
        """
        Add a part of a message; once it is complete, put it in
        C{messages}.  Only the first L{WebChatFactory.maxMessage}
        characters of a message are kept.
        """
        limit = self.factory.maxMessage
        if self._parts is None:
            self._parts, self._partSize = [], 0
        self._partSize += len(event.data)
        if self._partSize > limit * self.unterminatedFactor:
            messages.append(Overflow())
            self._parts = None
            return
        if self._partSize <= limit and isinstance(event, TextMessage):
            self._parts.append(event.data)
        if event.message_finished:
            parts, size, self._parts = self._parts, self._partSize, None
            if isinstance(event, BytesMessage):
                messages.append(BINARY)
            elif size > limit:
                messages.append(LineTooLong(size))
            else:
                messages.append("".join(parts).encode("utf-8"))

    def otherEvent(self, event: object) -> None:
        if event is BINARY:
            self.resetTimeout()
            self.badMessage("binary messages are not understood: send JSON text")

    def peerClosed(self, event: CloseConnection) -> None:
        websocket = self.websocket
        assert websocket is not None
        if event.code >= 1002 and event.code not in (1005, 1006):
            self.log.info(
                "web: closing {peer}: {reason} ({code})",
                peer=self.peer,
                reason=event.reason or "protocol error",
                code=event.code,
            )
        if websocket.state is not ConnectionState.CLOSED:
            self.send(websocket.send(event.response()))
        self.closeCode = 0  # answered already
        self.closeConnection()

    def lineReceived(self, line: bytes) -> None:
        """
        One complete text message: a JSON request.
        """
        try:
            request = json.loads(line)
        except ValueError:
            return self.badMessage("not JSON")
        kind = request.get("type") if isinstance(request, dict) else None
        handler = getattr(self, f"request_{kind}", None)
        if not isinstance(kind, str) or handler is None:
            return self.badMessage('not a request: {"type": "line", "text": "..."}')
        handler(request)

    def badMessage(self, why: str) -> None:
        self.log.info("web: {peer} sent a bad message: {why}", peer=self.peer, why=why)
        self.error(f"bad message: {why}")

    def request_line(self, request: Dict[str, Any]) -> None:
        text = request.get("text")
        if not isinstance(text, str):
            return self.badMessage('"text" must be a string')
        size = len(text.encode("utf-8", "replace"))
        if size > self.factory.maxLineLength:
            return super().lineTooLong(size)
        text = sanitize(text).strip()
        if text and self.session is not None:
            self.session.textReceived(text)

    def request_who(self, request: Dict[str, Any]) -> None:
        room = self.room
        if room is not None:
            d = room.nicks()
            d.addCallback(lambda nicks: self.sendWho(room.name, nicks))
            d.addErrback(self.requestFailed, "who")

    def sendWho(self, room: str, nicks: List[str]) -> None:
        self.direct(message(type="who", room=room, nicks=nicks))

    def request_rooms(self, request: Dict[str, Any]) -> None:
        d = self.factory.server.rooms()
        d.addCallback(self.sendRooms)
        d.addErrback(self.requestFailed, "rooms")

    def sendRooms(self, rooms: List[Any]) -> None:
        listed = [{"name": name, "count": count} for name, count in rooms]
        self.direct(message(type="rooms", rooms=listed))

    def requestFailed(self, failure: Failure, kind: str) -> None:
        if failure.check(ChatError):
            return self.error(str(failure.value))
        self.log.failure(
            "web: {kind} request from {peer}", failure, kind=kind, peer=self.peer
        )
        self.error(f"{kind} failed: try again")

    # --- output -----------------------------------------------------------

    def renderEvents(self, events: Sequence[ChatEvent]) -> bytes:
        now = self.factory.clock.seconds()
        return b"".join(message(**event_json(e), ts=now) for e in events)

    def history(self, room: str, events: Sequence[ChatEvent]) -> None:
        self.writeOut(
            message(type="history", room=room, events=[event_json(e) for e in events])
        )

    def notice(self, text: str) -> None:
        self.direct(message(type="notice", text=text))

    def error(self, text: str) -> None:
        self.direct(message(type="error", text=text))

    def deliver(self, batch: EventBatch) -> None:
        if self.websocket is None or self.transport.disconnecting:
            return
        data = batch.rendered(type(self), self.renderEvents)
        if not batch.kinds.isdisjoint(MOVES):
            data += self.youChanged()
        super().writeOut(data)

    def writeOut(self, data: bytes) -> None:
        if self.websocket is None:
            return  # still HTTP: chat output has nowhere to go
        super().writeOut(data + self.youChanged())

    def youChanged(self) -> bytes:
        """
        A C{you} message if the user's nickname or room changed since the
        last one, else nothing.
        """
        room = self.room
        if room is None:  # not in a room yet: the welcome
            return b""
        you = (self.nick, room.name)
        if you == self._you:
            return b""
        self._you = you
        return message(type="you", nick=you[0], room=you[1])

    # --- closing ----------------------------------------------------------

    def excessFlood(self) -> None:
        self.closeCode = POLICY_VIOLATION
        super().excessFlood()

    def lineTooLong(self, length: int) -> None:
        """
        A whole message over L{WebChatFactory.maxMessage}: dropped.
        """
        self.tooLong("message", length, "characters", self.factory.maxMessage)

    def overflow(self) -> None:
        self.closeCode = TOO_BIG
        self.quit("sent too big a message")
        self.error(
            f"message over {self.factory.maxMessage * self.unterminatedFactor}"
            f" characters: disconnecting"
        )
        self.closeConnection()

    def shutdownConnection(self) -> None:
        self.closeCode = GOING_AWAY
        super().shutdownConnection()

    def closeConnection(self) -> None:
        websocket = self.websocket
        if websocket is not None and self.connected and self.closeCode:
            if websocket.state is ConnectionState.OPEN:
                self.send(websocket.send(CloseConnection(self.closeCode)))
        super().closeConnection()

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        super().connectionLost(reason)
        if self.channel is not None and self.websocket is None:
            self.channel.connectionLost(reason)


@implementer(IProtocolNegotiationFactory)
class WebChatFactory(FrontEndFactory):
    """
    The web port of a chat: serves L{WebChatProtocol}, in the rooms of
    C{chat}, with its limits.

    @ivar maxMessage: the longest WebSocket message accepted, in bytes: a
        line of C{maxLineLength} bytes in its JSON, with room to spare.
    """

    protocol = WebChatProtocol  # type: ignore[assignment]
    serviceName = "web"
    fullMessage = (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 29\r\nConnection: close\r\n\r\nserver full, try again later\n"
    )
    perPeerMessage = (
        b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 39\r\nConnection: close\r\n\r\n"
        b"too many connections from your address\n"
    )
    notTLSMessage = (
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 28\r\nConnection: close\r\n\r\nthis port speaks HTTPS only\n"
    )
    httpTimeout = 60.0
    """Seconds an HTTP connection may stay idle (a WebSocket: see timeout)."""

    def __init__(self, chat: ChatFactory, origins: Sequence[str] = ()) -> None:
        super().__init__(chat)
        self.origins: Set[str] = set(origins)
        self.site = build_site(origins, self.httpTimeout, self.clock)

    def acceptableProtocols(self) -> List[bytes]:
        """
        Over TLS, what to answer a browser's ALPN offer: HTTP/1.1, the only
        version that upgrades to a WebSocket.  (Twisted 26 fails the
        handshake of a client that offers ALPN when the server names
        nothing: every browser.)
        """
        return [b"http/1.1"]

    @property
    def maxMessage(self) -> int:
        return 2 * self.maxLineLength + 256

    def buildSession(self, client: ChatProtocol) -> Any:
        return self.chat.buildSession(client)
