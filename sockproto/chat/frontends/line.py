# -*- test-case-name: tests.test_chat -*-
"""
The chat's line protocol, for telnet, nc and the C{sockproto chat} client.

Lines end with LF or CRLF both ways (the server sends CRLF).  A line that
does not start with C{/} goes to your room; your own lines come back to
you as everyone sees them, which is how you know the server took them.
"""

from typing import Any, List, Optional, Sequence, Type, Union

from twisted.application.service import IService
from twisted.cred.checkers import ICredentialsChecker
from zope.interface import implementer

from ...text import decode_line
from ..accounts import UnsupportedCheckerError
from ..events import (
    ACTION,
    JOIN,
    LEAVE,
    MESSAGE,
    NICK,
    PRIVATE,
    PRIVATE_NOTICE,
    QUIT,
    ChatEvent,
)
from ..events import NOTICE as ROOM_NOTICE
from ..hub import Chat
from ..interfaces import IChatClient, IChatServer
from ..session import ChatSession
from .base import FrontEndFactory, FrontEndProtocol

__all__ = [
    "ChatFactory",
    "ChatProtocol",
    "FrontEndFactory",
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


@implementer(IChatClient)
class ChatProtocol(FrontEndProtocol):
    """
    The chat's line front end: frames lines, hands each to its
    L{ChatSession} (which holds the commands, nicknames and rooms), and
    renders what the session and the room send back.

    Every line from the server starts with L{NOTICE} (C{-!- }), but for
    room lines (C{<nick> text}), actions (C{* nick text}) and private
    messages (C{*nick* -> *nick* text}), none of which a user can make
    start with it.

    Commands belong to the session (C{factory.session}, a L{ChatSession}
    subclass), so that every front end has them; a C{command_NAME} method
    here works too, for this front end alone.  To change how lines look,
    override a C{formatKIND} method (see L{formats}) or L{notice}.
    """

    factory: FrontEndFactory

    def lineReceived(self, line: bytes) -> None:
        """
        Called with each line's bytes, at the allowed rate: decode, and
        hand it to the session.
        """
        text = decode_line(line).strip()
        if text and self.session is not None:
            self.session.textReceived(text)

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
        ROOM_NOTICE: "formatMessage",  # an IRC NOTICE: shown as a line
        JOIN: "formatJoin",
        LEAVE: "formatLeave",
        QUIT: "formatLeave",
        NICK: "formatNick",
        PRIVATE: "formatPrivate",
        PRIVATE_NOTICE: "formatPrivate",
    }

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

    def history(self, room: str, events: Sequence[ChatEvent]) -> None:
        header = (NOTICE + ChatSession.lastLines(len(events), room) + "\r\n").encode()
        self.writeOut(header + self.renderEvents(events))

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


class ChatFactory(FrontEndFactory):
    """
    Serve L{ChatProtocol}, the line front end, in the rooms of a L{Chat}.

    C{ChatFactory(chat)} serves the hub C{chat}; C{ChatFactory(**limits)}
    (or C{ChatFactory(server, checker=..., **limits)}) makes a chat of its
    own with those limits, on the back end C{server} (an in-process one by
    default), whose session class is this class's L{session}.  Other front
    ends are then given C{factory.chat}.
    """

    protocol = ChatProtocol  # type: ignore[assignment]
    serviceName = "chat"
    fullMessage = b"-!- error: server full, try again later\r\n"
    perPeerMessage = b"-!- error: too many connections from your address\r\n"
    notTLSMessage = (
        b"-!- error: this port speaks TLS: use a TLS client (sockproto chat --tls)\r\n"
    )
    plainMessage = (
        b"-!- error: this port speaks plain text, not TLS: connect without TLS\r\n"
    )

    # The chat's defaults, named here too for one release (they are the
    # hub's: Chat.maxLineLength, ...).
    maxLineLength = Chat.maxLineLength
    rateLimit = Chat.rateLimit
    maxOutput = Chat.maxOutput
    historySize = Chat.historySize
    maxRooms = Chat.maxRooms
    timeout: Optional[float] = Chat.timeout

    session: Type[ChatSession] = ChatSession
    """The session class of the chat this factory makes, when not given one:
    subclass L{ChatSession} to add commands, for every front end."""

    def __init__(
        self,
        chat: Union[Chat, IChatServer, None] = None,
        *,
        checker: Optional[ICredentialsChecker] = None,
        **limits: Any,
    ) -> None:
        """
        @param chat: the L{Chat} to serve; or the back end of the chat to
            make, or None for an in-process one.
        @param checker: with no C{chat} given, the cred checker of its
            registered nicknames.
        @param limits: with a C{chat}, this port's own limits
            (C{timeout}, C{maxPerPeer}, ...); without, the chat's (see
            L{Chat}).
        @raise UnsupportedCheckerError: if C{checker} cannot tell which
            nicknames are registered.
        @raise OSError: if C{checker}'s password file cannot be read.
        """
        if not isinstance(chat, Chat):
            session = self.session if self.session is not ChatSession else None
            chat = Chat(chat, checker=checker, session=session, **limits)
            limits = {}
        elif checker is not None:
            raise TypeError("give the checker to the Chat")
        super().__init__(chat, **limits)

    def reload(self) -> None:
        """
        Read the registered nicknames again, if they come from a file.
        """
        self.chat.reload()

    def supportServices(self) -> List[IService]:
        return self.chat.supportServices()
