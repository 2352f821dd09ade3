# -*- test-case-name: tests.test_chat_hub -*-
"""
What every front end shares.  Its factory (L{FrontEndFactory}) is handed
the chat's hub (L{Chat}), takes the chat's limits unless told its own, and
builds each connection's session from the hub, so that a session subclass
reaches every front end.  Its protocol (L{FrontEndProtocol}) joins the
chat once the connection is ready, bounds what the client leaves unread,
and says what a limit hit means; each front end adds its codec: how lines
are read and how events, notices and errors are written.
"""

from typing import Any, Dict, List, Optional, Sequence

from twisted.application.service import IService
from twisted.python.failure import Failure
from zope.interface import implementer

from ...lines import LineFactory, LineProtocol
from ..events import ChatEvent, EventBatch
from ..hub import Chat
from ..interfaces import IChatClient, IChatRoom, IChatServer
from ..session import ChatSession

__all__ = ["FrontEndFactory", "FrontEndProtocol"]


@implementer(IChatClient)
class FrontEndProtocol(LineProtocol):
    """
    A connection of a front end: its session, its output bound, and the
    answers to the line machinery's limits.  Subclasses are codecs: they
    implement L{lineReceived}, L{renderEvents}, L{notice}, L{error} and
    L{history} (the rest of L{IChatClient} is here).
    """

    factory: "FrontEndFactory"
    session: Optional[ChatSession] = None
    _paused = False
    _producing = False
    _backlog = 0
    _dropped = False

    @property
    def nick(self) -> str:
        """The user's nickname (the session's)."""
        return self.session.nick if self.session is not None else ""

    @property
    def room(self) -> Optional[IChatRoom]:
        """The user's room (the session's)."""
        return self.session.room if self.session is not None else None

    def connectionMade(self) -> None:
        self.watchOutput()
        super().connectionMade()

    def watchOutput(self) -> None:
        """
        Register as the transport's producer, to be told when the client
        stops reading (see L{writeOut}).
        """
        self.transport.registerProducer(self, True)
        self._producing = True

    def closeConnection(self) -> None:
        # A TLS transport does not start its close while a producer is
        # registered: it would wait for the abort timer.
        if self.connected and self._producing:
            self._producing = False
            self.transport.unregisterProducer()
        super().closeConnection()

    def close(self) -> None:
        """
        The session ends the connection (C{/quit}, too many wrong
        passwords).
        """
        self.closeConnection()

    def connectionReady(self) -> None:
        """
        The connection can carry data (on TLS, the handshake is done):
        join the chat.
        """
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)  # chat lines are small and urgent
        self.session = self.factory.buildSession(self)
        self.session.start()

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        # The slots and timers first (they cannot fail), then the chat.
        super().connectionLost(reason)
        if self.session is not None:
            self.session.end()

    def shutdownConnection(self) -> None:
        """
        Called when the server stops: say so, then close.
        """
        if self.session is not None:
            self.session.quitReason = "server shutting down"
        self.notice("server shutting down")
        self.closeConnection()

    def lineTooLong(self, length: int) -> None:
        """
        Called when a line is over the limit: it is dropped.
        """
        self.tooLong("line", length, "bytes", self.factory.maxLineLength)

    def tooLong(self, what: str, length: int, unit: str, limit: int) -> None:
        """
        Tell the user, and the log, that C{what} (a line, a message) of
        C{length} C{unit} was over C{limit} and dropped.
        """
        self.logTooLong(what, length, unit)
        self.error(f"{what} too long ({length} {unit}, limit {limit}): dropped")

    def logTooLong(self, what: str, length: int, unit: str) -> None:
        self.log.info(
            "{service}: {peer} sent a {what} of {length} {unit}: dropped",
            service=self.factory.serviceName,
            peer=self.peer,
            what=what,
            length=length,
            unit=unit,
        )

    def overflow(self) -> None:
        """
        Called when far too much arrives without a line end: disconnect.
        """
        self.log.warn("chat: {peer} sent too much without a line end", peer=self.peer)
        self.quit("sent too much without a line end")
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
        self.quit("excess flood")
        self.error("excess flood: disconnecting")
        super().excessFlood()

    def quit(self, reason: str) -> None:
        """
        Set what the room is told when this connection ends.
        """
        if self.session is not None:
            self.session.quitReason = reason

    def deliver(self, batch: EventBatch) -> None:
        if self.transport.disconnecting:
            return  # closing: its last line is said, nothing more
        self.writeOut(batch.rendered(type(self), self.renderEvents))

    def receive(self, event: ChatEvent) -> None:
        self.direct(self.renderEvents([event]))

    """The method that formats each kind of event."""

    def nickChanged(self, nick: str, reason: str) -> None:
        """
        The back end gave this user the nickname C{nick}, for C{reason}.
        """
        if self.session is not None:
            self.session.nick = nick
        self.notice(f"you are now known as {nick}: {reason}")

    def direct(self, data: bytes) -> None:
        """
        Write to this client alone, after what its room has queued.
        """
        flush = getattr(self.room, "flush", None)
        if flush is not None:
            flush()  # the in-process room batches: what it holds goes first
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
        self.factory.drop("slow_reader")
        self._dropped = True
        self.log.warn(
            "chat: {peer} ({nick}) is not reading: {backlog} bytes unsent, dropping",
            peer=self.peer,
            nick=self.nick,
            backlog=self._backlog,
        )
        self.quit("not reading")
        self.transport.abortConnection()

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

    # --- the codec, a front end's own -------------------------------------

    def renderEvents(self, events: Sequence[ChatEvent]) -> bytes:
        """
        Encode C{events} for this front end's clients.  The result is shared
        by every connection of the class: it must depend on the events alone.
        """
        raise NotImplementedError(type(self).__name__ + ".renderEvents")

    def notice(self, text: str) -> None:
        """
        Tell this client C{text}, from the server.
        """
        raise NotImplementedError(type(self).__name__ + ".notice")

    def error(self, text: str) -> None:
        """
        Tell this client what went wrong.
        """
        raise NotImplementedError(type(self).__name__ + ".error")

    def history(self, room: str, events: Sequence[ChatEvent]) -> None:
        """
        Show the recent C{events} of C{room}, on entering it.
        """
        raise NotImplementedError(type(self).__name__ + ".history")


class FrontEndFactory(LineFactory):
    """
    The factory of a front end of C{chat} (lines, the web page, IRC): its
    members are in the rooms of C{chat}, with the same accounts, session
    class and limits.

    @ivar chat: the L{Chat}.
    @ivar maxOutput: bytes a client may leave unread, past the transport's
        own buffer, before it is dropped.
    """

    maxOutput = Chat.maxOutput

    def __init__(self, chat: Any, **overrides: Any) -> None:
        """
        @param chat: the L{Chat}; a front-end factory is taken for its
            chat, as before the hub, for one release.
        @param overrides: limits of this front end's own (C{timeout},
            C{maxLineLength}, ...) instead of C{chat}'s.
        """
        if not isinstance(chat, Chat):
            chat = chat.chat  # another front end's factory
        limits: Dict[str, Any] = chat.limits()
        limits.update(overrides)
        lineLimits = {
            name: limits.pop(name)
            for name in ("maxLineLength", "rateLimit", "maxOutput")
        }
        super().__init__(**limits)
        for name, value in lineLimits.items():
            if value is not None:
                setattr(self, name, value)
        self.chat: Chat = chat

    @property
    def server(self) -> IChatServer:
        """The chat's back end."""
        return self.chat.server

    @property
    def accounts(self) -> Any:
        """The chat's registered nicknames (L{Accounts}), or None."""
        return self.chat.accounts

    def buildSession(self, client: IChatClient) -> ChatSession:
        """
        Make the session of a connection: the chat's session class.
        """
        return self.chat.buildSession(client)

    def closeAll(self) -> Any:
        self.chat.flush()
        return super().closeAll()

    def reload(self) -> None:
        """
        Nothing to read again: the chat's own factory (the line front
        end's) reloads the accounts every front end shares.
        """

    def supportServices(self) -> List[IService]:
        """
        None: the chat's own factory runs the back end's.
        """
        return []
