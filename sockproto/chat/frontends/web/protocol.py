# -*- test-case-name: tests.test_chat_web -*-
"""
The chat's web front end: one page, and a WebSocket at C{/ws} that speaks
JSON, in the same rooms as the line clients.

Each connection to a C{--web} port starts as HTTP (a L{twisted.web}
L{Site} serves the page and its two files); a request for C{/ws} that
comes from the page's own origin is upgraded to a WebSocket (RFC 6455,
framed by wsproto), and from then on the connection is a chat client like
any other: a L{WebChatProtocol} is a front end whose wire is JSON in
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
import re
import struct
from typing import Any, Dict, List, Optional, Sequence, Set, Union

from twisted.internet.interfaces import IDelayedCall, IProtocolNegotiationFactory
from twisted.python.failure import Failure
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    TextMessage,
)
from zope.interface import implementer

from ....lines import LineTooLong, Overflow, Rated
from ....text import sanitize
from ...events import (
    JOIN,
    LEAVE,
    MESSAGE,
    NICK,
    NOTICE,
    PRIVATE,
    PRIVATE_NOTICE,
    QUIT,
    ChatEvent,
    EventBatch,
)
from ...interfaces import ChatError, IChatClient
from ..base import FrontEndFactory, FrontEndProtocol
from .http import (
    WebChannel,
    WebRequest,
    WebSocketResource,
    build_site,
    http_response,
    server_names,
)

__all__ = [
    "BadRequestError",
    "WebChatFactory",
    "WebChatProtocol",
    "WebRequest",
    "WebSocketResource",
    "event_json",
    "parse_request",
    "text_frame",
]

BINARY = object()
"""A binary message, among the text messages: answered with an error."""

MOVES = frozenset([JOIN, LEAVE, QUIT, NICK])
SHOWN_AS = {NOTICE: MESSAGE, QUIT: LEAVE, PRIVATE_NOTICE: PRIVATE}
"""The kinds the page shows as others: an IRC notice as a line, a quit as
a leave, a private notice as a private message."""
"""The kinds of event after which a member's nickname or room may differ."""

# Close codes (RFC 6455, 7.4.1).
GOING_AWAY = 1001
POLICY_VIOLATION = 1008
TOO_BIG = 1009

FRAME_COST = 16
"""What a frame costs against the queue bound beyond its payload, in bytes:
parsing a frame costs about as much as handling a short line."""


class Pong(Rated):
    """
    A ping to answer, in its turn: it counts against the rate limit.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        super().__init__(len(data) + FRAME_COST)
        self.data = data


class Fragment(Rated):
    """
    A frame of a message that is not finished: it counts against the rate
    limit as a line does, so that a flood of tiny fragments costs no more
    than a flood of lines.
    """

    __slots__ = ()


class BadRequestError(ValueError):
    """
    A WebSocket message that is not a request; the message says why.
    """


MAX_DEPTH = 4
"""The deepest nesting of arrays and objects in a request."""
MAX_NUMBER = 32
"""The most characters of a number in a request."""
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(rb"[\[\]{}]")


def _number(text: str) -> Any:
    if len(text) > MAX_NUMBER:
        raise BadRequestError(f"number over {MAX_NUMBER} characters")
    if not any(c in text for c in ".eE"):
        return int(text)
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise BadRequestError("number out of range")
    return number


def _constant(name: str) -> Any:
    raise BadRequestError(f"{name} is not JSON")


def _object(pairs: List[Any]) -> Dict[str, Any]:
    result: Dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise BadRequestError(f"duplicate key {json.dumps(key)}")
        for text in (key, value):
            if isinstance(text, str):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    raise BadRequestError("a string with a lone surrogate") from None
        result[key] = value
    return result


def parse_request(data: bytes) -> Dict[str, Any]:
    """
    The JSON object of a WebSocket message (UTF-8), checked before and
    while it is decoded: at most L{MAX_DEPTH} levels of nesting, numbers of
    at most L{MAX_NUMBER} characters, no C{NaN} or C{Infinity}, no key
    twice, no lone surrogate, and an object with a C{type}.

    @raise BadRequestError: with the reason, if it is not such a request.
    """
    depth = deepest = 0
    for bracket in _BRACKET.findall(_STRING.sub(b'""', data)):
        depth += 1 if bracket in b"[{" else -1
        deepest = max(depth, deepest)
        if deepest > MAX_DEPTH:
            raise BadRequestError(f"nested over {MAX_DEPTH} levels")
    try:
        request = json.loads(
            data,
            parse_int=_number,
            parse_float=_number,
            parse_constant=_constant,
            object_pairs_hook=_object,
        )
    except BadRequestError:
        raise
    except (ValueError, RecursionError):
        raise BadRequestError("not JSON") from None
    if not isinstance(request, dict):
        raise BadRequestError('not a request: {"type": "line", "text": "..."}')
    kind = request.get("type")
    if not isinstance(kind, str) or not kind.isidentifier():
        raise BadRequestError('not a request: {"type": "line", "text": "..."}')
    return request


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
    kind = SHOWN_AS.get(event.kind, event.kind)
    fields = {"type": kind, "room": event.room, "nick": event.nick}
    fields["text"] = event.text
    if event.target:
        fields["target"] = event.target
    return fields


@implementer(IChatClient)
class WebChatProtocol(FrontEndProtocol):
    """
    A connection to a C{--web} port: HTTP until the page opens its
    WebSocket, then a chat client that speaks JSON.  (Over 300 lines: the
    WebSocket's own rules, fragments, control frames and the closing
    handshake, beside the JSON requests; the HTTP side is in L{http}.)

    A text message is a "line" for the line protocol's machinery: the rate
    limit, the queue, the idle timer.  One over L{WebChatFactory.maxMessage}
    bytes is answered with an error; one more than L{unterminatedFactor}
    times that closes the connection (1009), and so does one in more than
    L{maxFragments} frames, or one not finished L{messageTimeout} seconds
    after its first frame (1008).  Every frame of an unfinished message
    and every ping count against the rate limit as lines do, and pongs go
    through the bound on unread output as everything written does.

    Closing, the server sends its close frame and then reads (at most
    L{lingerEvents} frames, for at most L{lingerTime} seconds) until the
    client's own close frame comes, so that the client gets the close
    frame before the connection ends, not a TCP reset.
    """

    factory: "WebChatFactory"
    channel: Optional[WebChannel] = None
    websocket: Optional[Connection] = None
    closeCode = 1000
    maxFragments = 32
    """Frames one message may come in."""
    messageTimeout = 30.0
    """Seconds from the first frame of a message to its last."""
    lingerTime = 2.0
    """Seconds to wait for the client's close frame after sending ours."""
    lingerEvents = 64
    """Frames read at most while waiting for the client's close frame."""
    lingerBytes = 65536
    """Bytes read at most while waiting for the client's close frame."""
    _lingerEvents = 0
    _lingerBytes = 0
    _you = ("", "")
    _parts: Optional[List[str]] = None
    _partSize = 0
    _fragments = 0
    _messageCall: Optional[IDelayedCall] = None
    _lingerCall: Optional[IDelayedCall] = None
    lingering = False

    def connectionMade(self) -> None:
        # The HTTP channel registers as the producer until the upgrade.
        super(FrontEndProtocol, self).connectionMade()

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
        self.factory.stats.bytesIn += len(data)
        websocket = self.websocket
        if websocket is None:
            if self.channel is not None:
                self.channel.dataReceived(data)
            return
        if self.lingering:
            return self.lingerData(data)
        websocket.receive_data(data)
        # One event at a time, so that a client closed for flooding costs
        # no parsing of the rest of what it sent.
        for event in websocket.events():
            messages: List[Any] = []
            self.websocketEvent(event, messages)
            if messages:
                self.handleEvents(messages)
            if self.lingering or not self.connected or self.transport.disconnecting:
                return

    def websocketEvent(self, event: Event, messages: List[Any]) -> None:
        """
        Handle one wsproto event; a complete message goes to C{messages}
        (its UTF-8, or a L{LineTooLong} or L{Overflow}), and so do a ping's
        L{Pong} and a L{Fragment} for each frame of a message that is not
        its last.
        """
        if isinstance(event, (TextMessage, BytesMessage)):
            self.messagePart(event, messages)
        elif isinstance(event, Ping):
            assert self.websocket is not None
            messages.append(Pong(self.websocket.send(event.response())))
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
            self._parts, self._partSize, self._fragments = [], 0, 0
        self._partSize += len(event.data)
        if event.frame_finished:  # a frame may come in several events
            self._fragments += 1
        if self._partSize > limit * self.unterminatedFactor:
            self._endMessage()
            messages.append(Overflow())
            return
        if self._fragments > self.maxFragments:
            self._endMessage()
            return self.refuseMessage(
                TOO_BIG, f"message in more than {self.maxFragments} frames"
            )
        if self._partSize <= limit and isinstance(event, TextMessage):
            self._parts.append(event.data)
        if not event.message_finished:
            if self._messageCall is None:
                self._messageCall = self.callLater(
                    self.messageTimeout, self.messageTooSlow
                )
            if event.frame_finished:
                messages.append(Fragment(len(event.data) + FRAME_COST))
            return
        parts, size = self._parts, self._partSize
        self._endMessage()
        if isinstance(event, BytesMessage):
            messages.append(BINARY)
        elif size > limit:
            messages.append(LineTooLong(size))
        else:
            messages.append("".join(parts).encode("utf-8"))

    def _endMessage(self) -> None:
        self._parts = None
        if self._messageCall is not None and self._messageCall.active():
            self._messageCall.cancel()
        self._messageCall = None

    def messageTooSlow(self) -> None:
        """
        Called when a message is not finished L{messageTimeout} seconds
        after its first frame: close (1008).
        """
        self._messageCall = None
        self.refuseMessage(
            POLICY_VIOLATION,
            f"message not finished in {self.messageTimeout:g} seconds",
        )

    def refuseMessage(self, code: int, why: str) -> None:
        """
        Close the connection with C{code} because of a message: log it
        and tell the user C{why}.
        """
        self.factory.drop("overflow" if code == TOO_BIG else "unfinished_message")
        self.log.info("web: closing {peer}: {why}", peer=self.peer, why=why)
        self.quit(why)
        self.error(f"{why}: disconnecting")
        self.closeCode = code
        self.closeConnection()

    def otherEvent(self, event: object) -> None:
        if type(event) is Pong:
            self.writeOut(event.data)
        elif event is BINARY:
            self.resetTimeout()
            self.badMessage("binary messages are not understood: send JSON text")

    def peerClosed(self, event: CloseConnection) -> None:
        websocket = self.websocket
        assert websocket is not None
        self.logClose(event)
        if websocket.state is not ConnectionState.CLOSED:
            self.send(websocket.send(event.response()))
        self.closeCode = 0  # answered already
        self.closeConnection()

    NORMAL_CLOSES = frozenset([1000, 1001, 1005, 1006])
    """Close codes not worth a log line: done, going away, none given."""

    def logClose(self, event: CloseConnection) -> None:
        """
        Log why the client closed: an application's own code (3000-4999)
        as such, a protocol error as one; a normal close not at all.
        """
        if event.code in self.NORMAL_CLOSES:
            return
        if 3000 <= event.code <= 4999:
            self.log.info(
                "web: {peer} closed with code {code}: {reason}",
                peer=self.peer,
                code=event.code,
                reason=event.reason or "no reason given",
            )
            return
        self.log.info(
            "web: closing {peer}: {reason} ({code})",
            peer=self.peer,
            reason=event.reason or "protocol error",
            code=event.code,
        )

    def lineReceived(self, line: bytes) -> None:
        """
        One complete text message: a JSON request.
        """
        try:
            request = parse_request(line)
        except BadRequestError as e:
            return self.badMessage(str(e))
        handler = getattr(self, f"request_{request['type']}", None)
        if handler is None:
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
        if self.websocket is None or self.lingering or self.transport.disconnecting:
            return
        data = batch.rendered(type(self), self.renderEvents)
        if not batch.kinds.isdisjoint(MOVES):
            data += self.youChanged()
        super().writeOut(data)

    def writeOut(self, data: bytes) -> None:
        if self.websocket is None or self.lingering:
            return  # still HTTP, or closing: chat output has nowhere to go
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
        if (
            websocket is not None
            and self.connected
            and self.closeCode
            and websocket.state is ConnectionState.OPEN
        ):
            self.send(websocket.send(CloseConnection(self.closeCode)))
            self.linger()
            return
        super().closeConnection()

    def linger(self) -> None:
        """
        Our close frame is sent: read until the client's comes back (or
        L{lingerTime} passes), then close.
        """
        if self.lingering:
            return
        self.lingering = True
        self._endMessage()
        self._lingerCall = self.callLater(self.lingerTime, self.lingerDone)

    def lingerData(self, data: bytes) -> None:
        """
        Called with what the client sends after our close frame: only its
        close frame matters.  Past L{lingerEvents} frames or
        L{lingerBytes} bytes, reading stops until the linger ends.
        """
        websocket = self.websocket
        assert websocket is not None
        self._lingerBytes += len(data)
        if self._lingerBytes <= self.lingerBytes:
            websocket.receive_data(data)
            for event in websocket.events():
                if isinstance(event, CloseConnection):
                    return self.lingerDone()
                self._lingerEvents += 1
                if self._lingerEvents >= self.lingerEvents:
                    break
        if self._lingerBytes > self.lingerBytes or (
            self._lingerEvents >= self.lingerEvents
        ):
            self.transport.pauseProducing()  # nothing more is worth reading

    def lingerDone(self) -> None:
        """
        The client answered our close frame, or took too long: close.
        """
        if self._lingerCall is not None and self._lingerCall.active():
            self._lingerCall.cancel()
        self._lingerCall = None
        super().closeConnection()

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        self._endMessage()
        if self._lingerCall is not None and self._lingerCall.active():
            self._lingerCall.cancel()
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
    fullMessage = http_response(503, "server full, try again later")
    perPeerMessage = http_response(429, "too many connections from your address")
    notTLSMessage = http_response(400, "this port speaks HTTPS only")
    httpTimeout = 60.0
    """Seconds an HTTP connection may stay idle (a WebSocket: see timeout)."""

    def __init__(
        self,
        chat: Any,
        origins: Sequence[str] = (),
        hosts: Sequence[str] = (),
    ) -> None:
        """
        @param origins: the other origins whose pages may use C{/ws}
            (C{--web-origin}).
        @param hosts: the names, besides the server's addresses,
            C{localhost} and the machine's name, that a request's C{Host}
            may give (C{--web-host}).
        """
        super().__init__(chat)
        self.origins: Set[str] = set(origins)
        self.hosts: Set[str] = {host.lower() for host in hosts}
        self.site = build_site(origins, self.httpTimeout, self.clock)

    def hostNames(self, local: Any) -> Set[str]:
        """
        The names a request that came to the local address C{local} may
        give as its C{Host}.
        """
        return server_names(local, self.hosts)

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
