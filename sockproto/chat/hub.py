# -*- test-case-name: tests.test_chat_hub -*-
"""
The hub of one chat, handed to each of its front ends, as twisted.words
hands one realm to every front end of a server: it owns the back end, the
registered nicknames, the session class and the limits, so that settings
live in one place and a L{ChatSession} subclass reaches every front end.

    chat = Chat(rateLimit=10, session=DiceChatSession)
    line, web, irc = ChatFactory(chat), WebChatFactory(chat), IrcChatFactory(chat)

Without a back end, a chat makes an in-process one, of the class the
in-process back end registers here (L{register_in_process}): the hub
imports no back end, the back ends import the hub's core.
"""

import socket
from typing import Any, Callable, Dict, List, Optional, Type

from twisted.application.service import IService
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.interfaces import IReactorTime

from ..server import DEFAULT, DEFAULT_MAX_PER_PEER, default_reactor
from .accounts import Accounts
from .interfaces import IChatClient, IChatServer
from .session import ChatSession

__all__ = ["Chat", "register_in_process"]

_in_process: List[Callable[..., IChatServer]] = []


def register_in_process(make: Callable[..., IChatServer]) -> None:
    """
    Name the in-process back end: C{make(name, clock, historySize=...,
    maxRooms=...)} makes one.  The in-process back end's module calls this
    when imported (C{sockproto.chat} imports it).
    """
    _in_process[:] = [make]


class Chat:
    """
    One chat: its back end (L{server}), its registered nicknames
    (L{accounts}), the class of each user's session (L{session}) and the
    limits every front end applies unless told otherwise.

    @ivar maxLineLength: the longest line accepted, in bytes.
    @ivar rateLimit: lines a second per client (0: no limit).
    @ivar maxOutput: bytes a client may leave unread, past the transport's
        own buffer, before it is dropped.
    @ivar historySize: lines of history a room keeps (in-process back end).
    @ivar maxRooms: rooms that may exist at once, 0 for no limit
        (in-process back end).
    @ivar timeout: seconds of silence after which a client is dropped, or
        None for never.
    @ivar maxConnections: connections each front end serves at once (None:
        from the open-file limit).
    @ivar maxPerPeer: connections one address may have open on each port.
    @ivar roomsHeld: rooms the IRC clients of each address are in, all
        together (see C{IrcChatFactory.maxChannelsPerPeer}).
    """

    session: Type[ChatSession] = ChatSession
    """The class of each connection's session: subclass it to add commands."""

    maxLineLength = 512
    rateLimit = 5.0
    maxOutput = 256 * 1024
    historySize = 20
    maxRooms = 1000
    timeout: Optional[float] = 3600.0
    maxConnections: Optional[int] = None
    maxPerPeer: int = DEFAULT_MAX_PER_PEER

    def __init__(
        self,
        server: Optional[IChatServer] = None,
        *,
        checker: Optional[ICredentialsChecker] = None,
        session: Optional[Type[ChatSession]] = None,
        clock: Optional[IReactorTime] = None,
        timeout: Any = DEFAULT,
        **limits: Any,
    ) -> None:
        """
        @param server: the back end; by default an in-process one with
            C{historySize} and C{maxRooms}.
        @param checker: a cred checker of the registered nicknames, if any.
        @param limits: C{maxLineLength}, C{rateLimit}, C{maxOutput},
            C{historySize}, C{maxRooms}, C{maxConnections},
            C{maxPerPeer}; those left out (or None) take the class's
            defaults.
        @raise UnsupportedCheckerError: if C{checker} cannot tell which
            nicknames are registered.
        @raise OSError: if C{checker}'s password file cannot be read.
        """
        for name, value in limits.items():
            if not hasattr(type(self), name) or name.startswith("_"):
                raise TypeError(f"Chat() got an unexpected argument {name!r}")
            if value is not None:
                setattr(self, name, value)
        if timeout is not DEFAULT:
            self.timeout = timeout
        if session is not None:
            self.session = session
        self.clock: Any = clock if clock is not None else default_reactor()
        if server is None:
            server = self._inProcess()
        self.server: IChatServer = server
        self.accounts = Accounts(checker, self.clock) if checker is not None else None
        if self.accounts is not None:
            registered = self.accounts.registeredName
            server.reserved = lambda nick: registered(nick) is not None
        self.roomsHeld: Dict[Optional[str], int] = {}

    def _inProcess(self) -> IChatServer:
        if not _in_process:
            raise RuntimeError("no in-process back end: import sockproto.chat")
        return _in_process[0](
            f"sockproto chat on {socket.gethostname()}",
            self.clock,
            historySize=self.historySize,
            maxRooms=self.maxRooms,
        )

    def limits(self) -> Dict[str, Any]:
        """
        What each front-end factory of this chat takes from it.
        """
        return {
            "maxLineLength": self.maxLineLength,
            "rateLimit": self.rateLimit,
            "maxOutput": self.maxOutput,
            "maxConnections": self.maxConnections,
            "maxPerPeer": self.maxPerPeer,
            "timeout": self.timeout,
            "clock": self.clock,
        }

    def buildSession(self, client: IChatClient) -> ChatSession:
        """
        Make the session of a connection, of the class L{session}.
        """
        return self.session(client, self.server, self.accounts)

    def reload(self) -> None:
        """
        Read the registered nicknames again, if they come from a file (on
        SIGHUP).
        """
        if self.accounts is not None:
            self.accounts.reloadLogged()

    def flush(self) -> None:
        """
        Deliver what the back end holds for the end of this reactor turn.
        """
        flush = getattr(self.server, "flush", None)
        if flush is not None:
            flush()

    def supportServices(self) -> List[IService]:
        """
        The services the back end needs while the chat runs (its link to
        Redis), started before the ports and stopped after the last
        connection closed.
        """
        service = getattr(self.server, "service", None)
        return [service] if service is not None else []
