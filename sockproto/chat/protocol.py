# -*- test-case-name: tests.test_chat -*-
"""
The chat's line protocol, for telnet, nc and the C{sockproto chat} client.

Lines end with LF or CRLF both ways (the server sends CRLF).  A line that
does not start with C{/} goes to your room; your own lines come back to
you as everyone sees them, which is how you know the server took them.
"""

import socket
from typing import Any, Optional, Sequence

from twisted.cred.checkers import ICredentialsChecker
from twisted.python.failure import Failure
from zope.interface import implementer

from ..lines import LineFactory, LineProtocol
from ..text import decode_line, plural
from .accounts import Accounts, UnsupportedCheckerError
from .events import ACTION, JOIN, LEAVE, MESSAGE, NICK, PRIVATE, ChatEvent, EventBatch
from .interfaces import ChatError, IChatMember, IChatRoom, IChatServer
from .rooms import ChatServer, valid_room

__all__ = [
    "ChatFactory",
    "ChatProtocol",
    "NOTICE",
    "UnsupportedCheckerError",
    "unforgeable",
]

NOTICE = "-!- "
"""What every line from the server starts with; no user's line can."""


def unforgeable(text: str) -> str:
    """
    C{text} from a user, with every C{-!-} broken up, so that no part of
    it (wrapped onto a new screen row, say) can pass for a server notice.
    """
    while "-!-" in text:
        text = text.replace("-!-", "-! -")
    return text


@implementer(IChatMember)
class ChatProtocol(LineProtocol):
    """
    One chat connection.

    Every line from the server starts with L{NOTICE} (C{-!- }), but for
    room lines (C{<nick> text}), actions (C{* nick text}) and private
    messages (C{*nick* -> *nick* text}), none of which a user can make
    start with it.

    To add a command, add a method C{command_NAME(self, argument)} whose
    docstring's first line is its help.  To change how lines look,
    override L{formatEvent} (for room and private events) or L{notice}.
    """

    factory: "ChatFactory"
    nick = ""
    quitReason = "connection lost"
    """What the room is told when this client leaves."""
    room: Optional[IChatRoom] = None
    joined = False
    """True from when the client has a nickname until it leaves."""
    wrongPasswords = 0
    _paused = False
    _producing = False
    _backlog = 0
    _dropped = False

    # --- connection -------------------------------------------------------

    def connectionMade(self) -> None:
        self.transport.registerProducer(self, True)
        self._producing = True
        super().connectionMade()

    def closeConnection(self) -> None:
        # A TLS transport does not start its close while a producer is
        # registered: it would wait for the abort timer.
        if self.connected and self._producing:
            self._producing = False
            self.transport.unregisterProducer()
        super().closeConnection()

    def connectionReady(self) -> None:
        """
        The connection can carry data (on TLS, the handshake is done):
        join the chat.
        """
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)  # chat lines are small and urgent
        server = self.factory.server
        self.nick = server.register(self)
        self.joined = True
        self.welcome()
        self.enter(server.room(server.defaultRoom))

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        # The slots and timers first (they cannot fail), then the chat.
        super().connectionLost(reason)
        if self.joined:
            self.joined = False
            self.factory.server.unregister(self)
            self.leaveRoom(self.quitReason)

    def welcome(self) -> None:
        """
        Called when a client has joined: greet it.
        """
        server = self.factory.server
        self.notice(f"Welcome to {server.name}, {self.nick}. Type /help for commands.")

    def shutdownConnection(self) -> None:
        """
        Called when the server stops: say so, then close.
        """
        self.quitReason = "server shutting down"
        self.notice("server shutting down")
        self.closeConnection()

    # --- input ------------------------------------------------------------

    def lineReceived(self, line: bytes) -> None:
        """
        Called with each line's bytes, at the allowed rate: decode, dispatch.
        """
        text = decode_line(line).strip()
        if text:
            self.textReceived(text)

    def textReceived(self, text: str) -> None:
        """
        Called with each non-blank line, decoded and cleaned.
        """
        if text.startswith("/") and not text.startswith("//"):
            name, _, argument = text[1:].partition(" ")
            self.commandReceived(name.lower(), argument.strip())
        else:
            self.say(text[1:] if text.startswith("//") else text)

    def commandReceived(self, name: str, argument: str) -> None:
        """
        Called with each command: runs C{command_NAME(argument)}.
        """
        method = getattr(self, "command_" + name, None) if name.isidentifier() else None
        if method is None:
            self.log.info(
                "chat: {peer} unknown command {name!r}", peer=self.peer, name=name
            )
            self.error(f"unknown command /{name} (try /help)")
            return
        try:
            method(argument)
        except ChatError as e:
            self.error(str(e))

    def say(self, text: str) -> None:
        """
        Called with each line for the room.
        """
        if self.room is not None:
            self.room.say(self, text)

    def lineTooLong(self, length: int) -> None:
        """
        Called when a line is over the limit: it is dropped.
        """
        limit = self.factory.maxLineLength
        self.log.info(
            "chat: {peer} sent a line of {length} bytes: dropped",
            peer=self.peer,
            length=length,
        )
        self.error(f"line too long ({length} bytes, limit {limit}): dropped")

    def overflow(self) -> None:
        """
        Called when far too much arrives without a line end: disconnect.
        """
        self.log.warn("chat: {peer} sent too much without a line end", peer=self.peer)
        self.quitReason = "sent too much without a line end"
        self.error("too much data without a line end: disconnecting")
        self.closeConnection()

    def throttled(self) -> None:
        """
        Called once per burst of lines over the rate limit: they are not
        lost, but wait; say so once.
        """
        super().throttled()
        rate = self.factory.rateLimit
        self.notice(f"slow down: over {rate:g} lines a second, your lines wait")

    def excessFlood(self) -> None:
        """
        Called when far more lines wait than the rate limit lets through:
        disconnect.
        """
        self.quitReason = "excess flood"
        self.error("excess flood: disconnecting")
        super().excessFlood()

    # --- commands ---------------------------------------------------------

    def command_help(self, argument: str) -> None:
        """/help: list the commands."""
        for name in sorted(dir(self)):
            if name.startswith("command_"):
                doc = (getattr(self, name).__doc__ or "").strip().splitlines()
                self.notice(doc[0] if doc else "/" + name[len("command_") :])
        self.notice("//TEXT: say a line that starts with /, as /TEXT")

    def command_nick(self, argument: str) -> None:
        """/nick NAME [PASSWORD]: change nickname (a registered one needs it)."""
        nick, _, password = argument.partition(" ")
        password = password.strip()
        if not nick:
            return self.error("usage: /nick NAME [PASSWORD]")
        if nick == self.nick:
            return self.error(f"you are {nick} already")
        accounts = self.factory.accounts
        account = accounts.registeredName(nick) if accounts is not None else None
        if account is None:
            if password:
                return self.error(f"nickname {nick} is not registered: /nick {nick}")
            return self.changeNick(nick)
        assert accounts is not None
        if not password:
            if account.lower() == nick.lower():
                return self.error(
                    f"nickname {nick} is registered: /nick {nick} PASSWORD"
                )
            return self.error(
                f"nickname {nick} looks like registered {account}: choose another"
            )
        if not accounts.mayGuess(self.peerKey):
            self.log.warn(
                "chat: {peer} tried a password for {nick} too soon after too"
                " many wrong ones from its address",
                peer=self.peer,
                nick=account,
            )
            return self.error("too many wrong passwords from your address: try later")
        d = accounts.check(account, password)
        d.addCallback(self.passwordChecked, nick)
        d.addErrback(self._checkFailed)

    def passwordChecked(self, right: bool, nick: str) -> None:
        """
        Called with the result of checking the password for registered
        nickname C{nick}.  While someone else uses it, every password, the
        right one too, gets "taken" and counts as a failed attempt, so that
        the answer tells a guesser nothing.
        """
        if not self.connected:
            return
        holder = self.factory.server.find(nick)
        taken = holder is not None and holder is not self
        if right and not taken:
            return self.changeNick(nick)
        if right:
            self.log.warn(
                "chat: {peer} gave the right password for {nick}, which is in"
                " use: refused",
                peer=self.peer,
                nick=nick,
            )
        else:
            self.log.warn(
                "chat: wrong password for {nick} from {peer}", nick=nick, peer=self.peer
            )
        self.failedAttempt(
            f"nickname {nick} is taken" if taken else f"wrong password for {nick}"
        )

    def failedAttempt(self, answer: str) -> None:
        """
        Called after a password attempt that did not get the nickname:
        count it against this connection and its address, and answer; past
        L{Accounts.maxWrongPerConnection}, disconnect.
        """
        accounts = self.factory.accounts
        assert accounts is not None
        accounts.wrongGuess(self.peerKey)
        self.wrongPasswords += 1
        if self.wrongPasswords < accounts.maxWrongPerConnection:
            return self.error(answer)
        self.log.warn(
            "chat: {peer} gave {count} wrong passwords: disconnecting",
            peer=self.peer,
            count=self.wrongPasswords,
        )
        self.quitReason = "too many wrong passwords"
        self.error(answer + "; too many wrong passwords: disconnecting")
        self.closeConnection()

    def _checkFailed(self, failure: Failure) -> None:
        self.log.failure(
            "chat: cannot check a password for {peer}", failure, peer=self.peer
        )
        if self.connected:
            self.error("cannot check passwords right now, try again later")

    def changeNick(self, nick: str) -> None:
        """
        Take C{nick}, if it is valid and free, and announce it.
        """
        old = self.nick
        problem = self.factory.server.rename(self, nick)
        if problem is not None:
            return self.error(problem)
        self.nick = nick
        if self.room is not None:
            self.room.renamed(self, old)
        self.log.info(
            "chat: {peer} {old} is now {new}", peer=self.peer, old=old, new=nick
        )

    def command_me(self, argument: str) -> None:
        """/me ACTION: show an action, as in '* alice waves'."""
        if not argument:
            return self.error("usage: /me ACTION")
        if self.room is not None:
            self.room.act(self, argument)

    def command_who(self, argument: str) -> None:
        """/who: list who is in your room."""
        if self.room is None:
            return
        nicks = self.room.nicks()
        shown = ", ".join(nicks[:100])
        more = f" and {len(nicks) - 100} more" if len(nicks) > 100 else ""
        self.notice(f"in #{self.room.name} ({len(nicks)}): {shown}{more}")

    def command_msg(self, argument: str) -> None:
        """/msg NICK TEXT: send a private message."""
        nick, _, text = argument.partition(" ")
        text = text.strip()
        if not nick or not text:
            return self.error("usage: /msg NICK TEXT")
        target = self.factory.server.find(nick)
        if target is None:
            return self.error(f"no such nickname: {nick}")
        event = ChatEvent(PRIVATE, "", self.nick, text, target.nick)
        target.receive(event)
        if target is not self:
            self.receive(event)

    def command_join(self, argument: str) -> None:
        """/join ROOM: leave your room for #ROOM, created if needed."""
        name = valid_room(argument)
        if name is None:
            return self.error(
                "usage: /join ROOM (1 to 32 ASCII letters, digits, _ or -)"
            )
        if self.room is not None and name == self.room.name:
            return self.error(f"you are already in #{name}")
        room = self.factory.server.room(name)  # may raise ChatError
        self.leaveRoom(f"joined #{name}")
        self.enter(room)

    def command_part(self, argument: str) -> None:
        """/part: go back to the default room."""
        default = self.factory.server.defaultRoom
        if self.room is not None and self.room.name == default:
            return self.error(f"you are in #{default} already; /quit leaves the chat")
        self.leaveRoom(argument or f"back to #{default}")
        self.enter(self.factory.server.room(default))

    maxRoomsShown = 50
    """How many rooms C{/rooms} lists, the most crowded first."""

    def command_rooms(self, argument: str) -> None:
        """/rooms: list the rooms, the most crowded first."""
        rooms = sorted(self.factory.server.rooms(), key=lambda room: -room[1])
        shown = ", ".join(
            f"#{name} ({count})" for name, count in rooms[: self.maxRoomsShown]
        )
        more = len(rooms) - self.maxRoomsShown
        self.notice(
            f"rooms ({len(rooms)}): {shown}" + (f" and {more} more" if more > 0 else "")
        )

    def command_quit(self, argument: str) -> None:
        """/quit [REASON]: leave the chat."""
        self.quitReason = argument or "quit"
        self.notice("bye")
        self.closeConnection()

    # --- rooms --------------------------------------------------------------

    def enter(self, room: IChatRoom) -> None:
        """
        Join C{room} and show who is there and its recent history.
        """
        name = room.name
        others = room.nicks()
        shown = ", ".join(others[:20]) + (" ..." if len(others) > 20 else "")
        self.notice(f"you are in #{name}" + (f" with {shown}" if others else ", alone"))
        self.room = room
        history = room.join(self)
        if history:
            last = plural(len(history), "line")
            header = f"{NOTICE}last {last} of #{name}:\r\n".encode()
            self.writeOut(header + self.renderEvents(history))

    def leaveRoom(self, reason: str) -> None:
        """
        Leave the current room, if any, with C{reason}.
        """
        if self.room is not None:
            room, self.room = self.room, None
            room.leave(self, reason)

    # --- output -------------------------------------------------------------

    def deliver(self, batch: EventBatch) -> None:
        if self.transport.disconnecting:
            return  # closing: its last line is said, nothing more
        self.writeOut(batch.rendered(type(self), self.renderEvents))

    def receive(self, event: ChatEvent) -> None:
        self.direct(self.renderEvents([event]))

    def renderEvents(self, events: Sequence[ChatEvent]) -> bytes:
        """
        Encode C{events}, one line each.  The result is shared by every
        connection of this class: it must depend on the events alone.
        """
        text = "\r\n".join([self.formatEvent(event) for event in events])
        return (text + "\r\n").encode("utf-8")

    formats = {
        MESSAGE: "formatMessage",
        ACTION: "formatAction",
        JOIN: "formatJoin",
        LEAVE: "formatLeave",
        NICK: "formatNick",
        PRIVATE: "formatPrivate",
    }
    """The method that formats each kind of event."""

    def formatEvent(self, event: ChatEvent) -> str:
        """
        Called to turn an event into a line (without line end): calls the
        method L{formats} names for its kind, or L{formatOther}.
        """
        return getattr(self, self.formats.get(event.kind, "formatOther"))(event)

    def formatMessage(self, event: ChatEvent) -> str:
        """A line said in the room: C{<alice> hello}."""
        return f"<{event.nick}> {unforgeable(event.text)}"

    def formatAction(self, event: ChatEvent) -> str:
        """An action (C{/me}): C{* alice waves}."""
        return f"* {event.nick} {unforgeable(event.text)}"

    def formatJoin(self, event: ChatEvent) -> str:
        """Someone came in: C{-!- alice joined #lobby}."""
        return f"{NOTICE}{event.nick} joined #{event.room}"

    def formatLeave(self, event: ChatEvent) -> str:
        """Someone left, and why: C{-!- alice left #lobby (quit)}."""
        return f"{NOTICE}{event.nick} left #{event.room} ({unforgeable(event.text)})"

    def formatNick(self, event: ChatEvent) -> str:
        """A new nickname: C{-!- guest1 is now known as alice}."""
        return f"{NOTICE}{event.nick} is now known as {event.text}"

    def formatPrivate(self, event: ChatEvent) -> str:
        """A private message: C{*alice* -> *bob* psst}."""
        return f"*{event.nick}* -> *{event.target}* {unforgeable(event.text)}"

    def formatOther(self, event: ChatEvent) -> str:
        """An event of a kind this class does not know: its text, as a notice."""
        return NOTICE + unforgeable(event.text)

    def notice(self, text: str) -> None:
        """
        Send a line from the server to this client alone.
        """
        self.direct((NOTICE + text + "\r\n").encode("utf-8"))

    def error(self, text: str) -> None:
        """
        Send an error line to this client alone.
        """
        self.direct((NOTICE + "error: " + text + "\r\n").encode("utf-8"))

    def direct(self, data: bytes) -> None:
        """
        Write to this client alone, after what its room has queued.
        """
        if self.room is not None:
            self.room.flush()
        self.writeOut(data)

    def writeOut(self, data: bytes) -> None:
        """
        Write C{data}, keeping count of what is unsent while the client
        does not read; past C{factory.maxOutput}, drop the client.
        """
        if self._paused:
            if self._dropped:
                return
            self._backlog += len(data)
            if self._backlog > self.factory.maxOutput:
                return self.slowReader()
        self.send(data)

    def slowReader(self) -> None:
        """
        Called when the client's unsent output passes the bound: abort.
        """
        self._dropped = True
        self.log.warn(
            "chat: {peer} ({nick}) is not reading: {backlog} bytes unsent, dropping",
            peer=self.peer,
            nick=self.nick,
            backlog=self._backlog,
        )
        self.quitReason = "not reading"
        self.transport.abortConnection()

    # IPushProducer: the transport tells us when its buffer is full.

    def pauseProducing(self) -> None:
        # The transport calls this on every write while its buffer is full.
        if self._paused:
            return
        self._paused = True
        self._backlog = 0

    def resumeProducing(self) -> None:
        self._paused = False
        self._backlog = 0

    def stopProducing(self) -> None:
        self._paused = False


class ChatFactory(LineFactory):
    """
    Serve L{ChatProtocol}.

    @ivar server: the L{IChatServer} holding nicknames and rooms.
    @ivar maxLineLength: the longest line accepted, in bytes.
    @ivar rateLimit: lines a second per client (0: no limit).
    @ivar maxOutput: bytes a client may leave unread, past the transport's
        own buffer, before it is dropped.
    @ivar accounts: the registered nicknames (L{Accounts}) when a cred
        C{checker} is given, else None: then every nickname is free to take.
    """

    protocol = ChatProtocol  # type: ignore[assignment]
    serviceName = "chat"
    fullMessage = b"-!- error: server full, try again later\r\n"
    perPeerMessage = b"-!- error: too many connections from your address\r\n"
    notTLSMessage = (
        b"-!- error: this port speaks TLS: use a TLS client (sockproto chat --tls)\r\n"
    )

    maxLineLength = 512
    rateLimit = 5.0
    maxOutput = 256 * 1024
    historySize = 20
    maxRooms = 1000
    timeout: Optional[float] = 3600.0

    def __init__(
        self,
        server: Optional[IChatServer] = None,
        *,
        maxLineLength: Optional[int] = None,
        rateLimit: Optional[float] = None,
        maxOutput: Optional[int] = None,
        historySize: Optional[int] = None,
        maxRooms: Optional[int] = None,
        checker: Optional[ICredentialsChecker] = None,
        **limits: Any,
    ) -> None:
        """
        @param historySize: lines of history a room keeps, and
        @param maxRooms: how many rooms may exist at once (0: no limit),
            for the L{ChatServer} made when no C{server} is given.
        @param limits: C{maxConnections}, C{maxPerPeer}, C{timeout},
            C{clock}: see L{ServiceFactory}.  Arguments left out take the
            class's defaults.
        @raise UnsupportedCheckerError: if C{checker} cannot tell which
            nicknames are registered.
        @raise OSError: if C{checker}'s password file cannot be read.
        """
        super().__init__(**limits)
        for name, value in [
            ("maxLineLength", maxLineLength),
            ("rateLimit", rateLimit),
            ("maxOutput", maxOutput),
            ("historySize", historySize),
            ("maxRooms", maxRooms),
        ]:
            if value is not None:
                setattr(self, name, value)
        if server is None:
            server = ChatServer(
                f"sockproto chat on {socket.gethostname()}",
                self.clock,
                historySize=self.historySize,
                maxRooms=self.maxRooms,
            )
        self.server: IChatServer = server
        self.accounts = Accounts(checker, self.clock) if checker is not None else None
        if self.accounts is not None:
            registered = self.accounts.registeredName
            server.reserved = lambda nick: registered(nick) is not None

    def reload(self) -> None:
        """
        Read the registered nicknames again, if they come from a file.
        """
        if self.accounts is not None:
            self.accounts.reloadLogged()

    def closeAll(self) -> Any:
        self.server.flush()
        return super().closeAll()
