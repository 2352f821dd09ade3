# -*- test-case-name: tests.test_chat_irc -*-
"""
The chat's IRC front end: irssi, WeeChat, HexChat or an IRC bot connect as
to an IRC server, into the same rooms as the line and web clients (a room
is a channel: C{#lobby}).

An IRC user may be in several rooms at once: its L{ChatSession} joins each
room it asks for as the same member (the back end delivers each room's
events to it, named by room), and says a line in the room its C{PRIVMSG}
names.  Commands that are not IRC's (C{/rooms}) still work through
C{PRIVMSG} to the server's own nickname.

Lines are parsed with L{twisted.words.protocols.irc.parsemsg} and CTCP with
L{ctcpExtract}; they arrive through the line protocol's machinery (512
bytes, rate limit, bounded output), as the line protocol's do.
"""

import itertools
from collections import deque
from typing import Any, Deque, Dict, FrozenSet, List, Optional, Sequence, Set, Tuple

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.words.protocols import irc
from zope.interface import implementer

from ....text import sanitize
from ...events import (
    ACTION,
    MESSAGE,
    NICK,
    NOTICE,
    QUIT,
    ChatEvent,
    EventBatch,
)
from ...interfaces import (
    ChatError,
    IChatClient,
)
from ...names import valid_room
from ...session import ChatSession
from ..base import FrontEndFactory, FrontEndProtocol
from .channels import Channels
from .commands import dispatch
from .queries import Queries
from .registration import Registration
from .render import (
    SERVER,
    SERVER_NAME_RULE,
    SERVICE,
    format_event,
    irc_line,
    irc_lines,
    mask,
    time_tag,
    valid_server_name,
)

__all__ = ["IrcChatFactory", "IrcChatProtocol", "IrcSession", "irc_line"]

IrcSession = ChatSession
"""Deprecated: every front end's session is a L{ChatSession} now, which may be
in several rooms at once."""


ONCE_PER_CLIENT = frozenset([NICK, QUIT])
"""Events a client is shown once, whichever of its rooms they came from."""
ECHOED = frozenset([MESSAGE, ACTION, NOTICE])
"""A client's own events it gets back with C{echo-message}."""
_batches = itertools.count(1)
QUIT_WINDOW = 5.0
"""Seconds within which the quits of one nick are the same quit."""


@implementer(IChatClient)
class IrcChatProtocol(FrontEndProtocol):
    """
    One IRC client: its connection, the talking commands, and its output.
    Registration (CAP, SASL, PASS, NICK, USER) is its L{Registration}, the
    channel commands its L{Channels}, the questions its L{Queries}; the
    command table is L{commands}; the lines are written by L{render}.

    (Over 300 lines: the batched output — shared renderings, echo, tags,
    nick changes and quits once per client — is the connection's hot path,
    kept in one place.)
    """

    factory: "IrcChatFactory"
    session: Optional[ChatSession] = None
    registration: Registration
    serverName = SERVER
    channels: Channels
    queries: Queries
    modes: Set[str] = frozenset()  # type: ignore[assignment]
    """The client's user modes (C{i} at most: it changes nothing)."""
    registered = False
    """Whether the client has registered: set by its L{Registration}'s
    welcome, the one place (a plain attribute: every delivery reads it)."""
    caps: Set[str] = frozenset()  # type: ignore[assignment]
    """The IRCv3 capabilities the client enabled: its L{Registration}'s."""
    tags: FrozenSet[str] = frozenset()
    """Those of L{caps} that put tags on messages: set by its L{Registration}
    (a plain attribute, read on every delivery)."""
    away = ""
    _pinged = False

    def connectionReady(self) -> None:
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)
        self._seenNicks: Deque[Tuple[str, str]] = deque(maxlen=16)
        self._quits: Dict[str, float] = {}
        # Made now, started on registering: SASL counts its guesses.
        self.session = self.factory.buildSession(self)
        self.serverName = self.factory.serverName
        self.registration = Registration(self)
        self.caps = self.registration.caps
        self.modes = set()
        self.channels = Channels(self)
        self.queries = Queries(self)

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        registration = getattr(self, "registration", None)
        if registration is not None:
            registration.stop()
        channels = getattr(self, "channels", None)
        if channels is not None:
            channels.releaseAll()
        super().connectionLost(reason)

    @property
    def nick(self) -> str:
        return self.session.nick if self.session is not None else ""

    @property
    def shownNick(self) -> str:
        """The nickname the client knows it by: C{*} until registered."""
        return self.nick if self.registered else "*"

    # --- input ------------------------------------------------------------

    def lineReceived(self, line: bytes) -> None:
        self._pinged = False
        text = line.decode("utf-8", "replace").strip("\r\n ")
        if not text:
            return
        try:
            prefix, command, params = irc.parsemsg(text)
        except (ValueError, IndexError, irc.IRCBadMessage):
            return self.numeric(irc.ERR_UNKNOWNCOMMAND, "*", "Malformed message")
        answer = dispatch(self, command.upper(), params)
        if isinstance(answer, Deferred):
            # The replies leave in the order of the commands; a ChatError
            # (the chat network lost meanwhile) is told to the client.
            assert self.session is not None
            self.waitFor(self.session.answer(answer))

    def renamed(self, old: str, new: str) -> None:
        """
        Tell the client it is now C{new}: its rooms announce it, and say
        so here if it is in none.
        """
        assert self.session is not None
        if not self.session.rooms:
            self._seenNicks.append((old, new))
            self.sendIrc(irc_line(mask(old), "NICK", new))

    # connection upkeep

    def irc_PING(self, params: List[str]) -> None:
        name = self.serverName
        self.sendIrc(irc_line(name, "PONG", name, params[0]))

    def irc_OPER(self, params: List[str]) -> None:
        self.numeric(irc.ERR_NOOPERHOST, "No operators on this server")

    def irc_PONG(self, params: List[str]) -> None:
        pass  # any line counts: lineReceived cleared the ping

    def irc_QUIT(self, params: List[str]) -> None:
        self.quit(f"Quit: {sanitize(params[0])}" if params else "Quit")
        self.sendIrc(irc_line(None, "ERROR", "Closing link: quit"))
        self.closeConnection()

    def timeoutConnection(self) -> None:
        """
        Silent for the idle time: ping it once; silent for that long
        again, drop it.
        """
        if self.registered and not self._pinged:
            self._pinged = True
            self.sendIrc(irc_line(None, "PING", self.serverName))
            self.setTimeout(self.factory.timeout)
            return
        self.quit("Ping timeout")
        self.sendIrc(irc_line(None, "ERROR", "Closing link: ping timeout"))
        super().timeoutConnection()

    # talking

    def irc_PRIVMSG(
        self, params: List[str], notice: bool = False
    ) -> Optional["Deferred[None]"]:
        if not params or not params[0]:
            if not notice:
                self.numeric(irc.ERR_NORECIPIENT, "No recipient given (PRIVMSG)")
            return None
        if len(params) < 2 or not params[1]:
            if not notice:
                self.numeric(irc.ERR_NOTEXTTOSEND, "No text to send")
            return None
        target, text = params[0], params[1]
        action = False
        if text.startswith(irc.X_DELIM):
            tag, data = (irc.ctcpExtract(text)["extended"] or [("", "")])[0]
            if tag != "ACTION":
                return None  # other CTCPs (VERSION, ...) are not relayed
            action, text = True, data or ""
        text = sanitize(text).strip()
        if not text:
            return None
        session = self.session
        assert session is not None
        if target.startswith("#"):
            name = valid_room(target)
            if name is None or not session.sayIn(name, text, action, notice):
                if not notice:
                    self.numeric("404", target, "Cannot send to channel (join it)")
            return None
        if target.lower() == SERVICE:
            session.textReceived(text if text.startswith("/") else "/" + text)
            return None
        return self.tell(target, f"* {self.nick} {text}" if action else text, notice)

    def irc_NOTICE(self, params: List[str]) -> Optional["Deferred[None]"]:
        return self.irc_PRIVMSG(params, notice=True)

    def tell(self, nick: str, text: str, notice: bool) -> "Deferred[None]":
        """
        Send C{text} to C{nick}, privately (as a notice, if C{notice}: then
        no error comes back, as RFC 2812 says).
        """
        session = self.session
        assert session is not None
        server = self.factory.server
        # A back end written before notify() existed tells instead.
        send = getattr(server, "notify", server.tell) if notice else server.tell
        d = send(self, nick, text)

        def sent(event: ChatEvent) -> None:
            if "echo-message" in self.caps and event.target != self.nick:
                self.direct(self.renderEvents([event], self.tags))
            away = self.queries.awayMessage(event.target)
            if away and not notice:  # RFC 2812: 301 answers a PRIVMSG
                self.numeric(irc.RPL_AWAY, event.target, away)

        d.addCallback(sent)

        def failed(failure: Failure) -> None:
            failure.trap(ChatError)
            if not notice:
                self.numeric(irc.ERR_NOSUCHNICK, nick, "No such nick/channel")

        return session.answer(d.addErrback(failed))

    def irc_AWAY(self, params: List[str]) -> None:
        self.away = sanitize(params[0]) if params and params[0] else ""
        if self.away:
            self.numeric(irc.RPL_NOWAWAY, "You have been marked as being away")
        else:
            self.numeric(irc.RPL_UNAWAY, "You are no longer marked as being away")

    # --- output -----------------------------------------------------------

    def sendIrc(self, line: str) -> None:
        self.writeOut((line + "\r\n").encode("utf-8"))

    def numeric(self, code: str, *params: str) -> None:
        self.sendIrc(irc_line(self.serverName, code, self.shownNick, *params))

    def deliver(self, batch: EventBatch) -> None:
        if self.transport.disconnecting or not self.registered:
            return
        nick = self.nick
        caps = self.caps
        tags = self.tags
        if tags:  # formatted once for the clients that want these tags
            key: object = (type(self), tags)
            pieces = batch.each(key, lambda e: self.renderOne(e, tags))
        else:
            key = type(self)
            pieces = batch.each(key, self.renderOne)
        # Its own events are not echoed, and each client shows a nickname
        # change once, whichever of its rooms it came from: those batches
        # are put together for each client, from events formatted once.
        if nick in batch.senders or not batch.kinds.isdisjoint(ONCE_PER_CLIENT):
            echo = "echo-message" in caps
            self.writeOut(self.renderOthers(batch, pieces, nick, echo, tags))
        else:
            self.writeOut(batch.rendered(key, lambda _: b"".join(pieces)))

    def renderOthers(
        self,
        batch: EventBatch,
        pieces: Sequence[bytes],
        nick: str,
        echo: bool,
        tags: FrozenSet[str] = frozenset(),
    ) -> bytes:
        """
        C{batch} for the client of C{nick}, from its events formatted once
        for all the clients (C{pieces}): the events of the others (in a busy
        room, most members are senders of each batch; formatting the batch
        again for each of them made the cost grow with the square of the
        room).  Nickname changes are formatted for each client, which shows
        each change once, whichever rooms it came from.  With C{echo}
        (echo-message), its own lines and actions are there too.
        """
        return b"".join(
            [
                self.renderEvents([e], tags) if e.kind in ONCE_PER_CLIENT else p
                for e, p in zip(batch.events, pieces)
                if e.kind in ONCE_PER_CLIENT
                or e.nick != nick
                or (echo and e.kind in ECHOED)
            ]
        )

    def renderOne(self, event: ChatEvent, tags: FrozenSet[str] = frozenset()) -> bytes:
        """
        One event, but for a nickname change or a quit, as IRC messages.
        """
        if event.kind in ONCE_PER_CLIENT:
            return b""
        return self.renderEvents([event], tags)

    def receive(self, event: ChatEvent) -> None:
        # Its own copy of what it sent comes only with echo-message.
        if event.nick != self.nick or (
            "echo-message" in self.caps and event.target != self.nick
        ):
            self.direct(self.renderEvents([event], self.tags))

    def renderEvents(
        self,
        events: Sequence[ChatEvent],
        tags: FrozenSet[str] = frozenset(),
        batch: str = "",
    ) -> bytes:
        """
        C{events} as IRC messages, with the IRCv3 message tags of C{tags}
        (C{server-time}, C{account-tag}) and C{batch}, if any.
        """
        lines = []
        for event in events:
            line = self.formatIrc(event)
            if not line:
                continue
            prefix = self.messageTags(event, tags, batch) if tags or batch else ""
            if prefix:
                line = "\r\n".join(prefix + part for part in line.split("\r\n"))
            lines.append(line + "\r\n")
        return "".join(lines).encode("utf-8")

    def messageTags(self, event: ChatEvent, tags: FrozenSet[str], batch: str) -> str:
        """
        The tags of C{event}'s messages, with the space after them ("" if
        none): C{batch=}, C{account=} (a registered nickname is held by
        whoever logged in to it), C{time=}.
        """
        parts = [f"batch={batch}"] if batch else []
        accounts = self.factory.accounts
        if "account-tag" in tags and accounts is not None:
            account = accounts.registeredName(event.nick)
            if account is not None:
                parts.append(f"account={account}")
        if "server-time" in tags and event.time:
            parts.append(time_tag(event.time))
        return "@" + ";".join(parts) + " " if parts else ""

    def formatIrc(self, event: ChatEvent) -> str:
        """
        One event as IRC messages (a nickname change or a quit once per
        client, whichever of its rooms it came from).
        """
        if event.kind == NICK:
            return self.nickLine(event)
        if event.kind == QUIT:
            return self.quitLine(event)
        return format_event(event)

    def nickLine(self, event: ChatEvent) -> str:
        change = (event.nick, event.text)
        if change in self._seenNicks:  # the same change, from another room
            return ""
        self._seenNicks.append(change)
        return irc_line(mask(event.nick), "NICK", event.text)

    def quitLine(self, event: ChatEvent) -> str:
        """
        A quit, once: the same quit comes from each room the two shared,
        within moments (a later quit of the same nick is another one).
        """
        now = self.factory.clock.seconds()
        quits = self._quits
        seen = quits.get(event.nick)
        if seen is not None and now - seen < QUIT_WINDOW:
            return ""
        if len(quits) >= 64:
            for nick in [n for n, t in quits.items() if now - t >= QUIT_WINDOW]:
                del quits[nick]
        quits[event.nick] = now
        return irc_lines(mask(event.nick), "QUIT", event.text).split("\r\n", 1)[0]

    def history(self, room: str, events: Sequence[ChatEvent]) -> None:
        entering = self.channels.entering.get(room)
        if entering is not None:  # after its JOIN and NAMES
            entering.append(events)
        else:
            self.sendHistory(room, events)

    def sendHistory(self, room: str, events: Sequence[ChatEvent]) -> None:
        """
        Show room C{room}'s recent lines: to a client with C{server-time},
        as the lines they were, at their times; else as notices to the
        channel.
        """
        caps = self.caps
        if "server-time" in caps or "batch" in caps:
            said = [e for e in events if e.kind in (MESSAGE, ACTION)]
            if "batch" not in caps:
                return self.writeOut(self.renderEvents(said, self.tags))
            ref = f"history{next(_batches)}"
            server, channel = self.serverName, f"#{room}"
            self.sendIrc(irc_line(server, "BATCH", f"+{ref}", "chathistory", channel))
            self.writeOut(self.renderEvents(said, self.tags, ref))
            self.sendIrc(irc_line(server, "BATCH", f"-{ref}"))
            return
        lines = [f"last {len(events)} lines of #{room}:"]
        for event in events:
            if event.kind == MESSAGE:
                lines.append(f"<{event.nick}> {event.text}")
            elif event.kind == ACTION:
                lines.append(f"* {event.nick} {event.text}")
        for line in lines:
            self.sendIrc(irc_lines(self.serverName, "NOTICE", f"#{room}", line))

    def notice(self, text: str) -> None:
        self.sendIrc(irc_lines(self.serverName, "NOTICE", self.shownNick, text))

    def error(self, text: str) -> None:
        self.notice("error: " + text)

    def nickChanged(self, nick: str, reason: str) -> None:
        old = self.nick
        super().nickChanged(nick, reason)
        self._seenNicks.append((old, nick))
        self.sendIrc(irc_line(mask(old), "NICK", nick))

    def shutdownConnection(self) -> None:
        if self.session is not None:
            self.session.quitReason = "server shutting down"
        self.sendIrc(irc_line(None, "ERROR", "Closing link: server shutting down"))
        self.closeConnection()

    def close(self) -> None:
        self.sendIrc(irc_line(None, "ERROR", "Closing link"))
        super().close()

    def lineTooLong(self, length: int) -> None:
        self.logTooLong("line", length, "bytes")
        self.numeric("417", "Input line was too long")


class IrcChatFactory(FrontEndFactory):
    """
    The IRC port of a chat: serves L{IrcChatProtocol}, in the rooms of
    C{chat}, with its limits; idle clients are pinged after
    L{pingInterval} seconds, and dropped after as long again.
    """

    protocol = IrcChatProtocol  # type: ignore[assignment]
    serviceName = "irc"
    fullMessage = b"ERROR :Closing link: server full, try again later\r\n"
    perPeerMessage = b"ERROR :Closing link: too many connections from your address\r\n"
    notTLSMessage = b"ERROR :Closing link: this port speaks TLS\r\n"
    plainMessage = b"ERROR :Closing link: this port does not speak TLS\r\n"
    pingInterval = 120.0
    registrationTimeout = 60.0
    """Seconds a client has to register (NICK and USER, CAP END)."""
    maxChannels = 20
    """Channels one connection may be in at once (CHANLIMIT)."""
    maxChannelsPerPeer = 64
    """Rooms the connections of one address may have created and still be
    in, all together (joining rooms others made does not count): one
    address cannot hold every room C{--max-rooms} allows."""
    serverName = SERVER
    """The server's name in what it says (C{--server-name})."""

    def __init__(self, chat: Any, serverName: Optional[str] = None) -> None:
        """
        @param serverName: the server's name (see L{valid_server_name});
            by default L{SERVER}.
        @raise ValueError: if C{serverName} is not a valid one.
        """
        # 512 bytes with the CRLF (RFC 2812 2.3): 510, and the CR counts.
        super().__init__(chat, maxLineLength=511, timeout=self.pingInterval)
        if serverName is not None:
            if not valid_server_name(serverName):
                raise ValueError(
                    f"invalid server name {serverName!r}: {SERVER_NAME_RULE}"
                )
            self.serverName = serverName
