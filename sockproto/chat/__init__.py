"""
The chat service: one chat reached from nc and telnet (lines), browsers
(a page over WebSocket) and IRC clients.

The core (L{Chat}, the hub; L{ChatSession}, one user with no transport;
the events, interfaces and name rules) knows no wire and no storage.  The
front ends (C{frontends}: L{ChatFactory} for lines, C{web}, C{irc}) are
each handed the hub; the back ends (C{backends}: L{ChatServer} in this
process, C{redis} shared) sit behind L{IChatServer} and L{IChatRoom}.
"""

from .backends.memory import ChatRoom, ChatServer
from .events import ChatEvent, EventBatch
from .frontends.line import ChatFactory, ChatProtocol, FrontEndFactory
from .hub import Chat
from .interfaces import ChatError, IChatClient, IChatMember, IChatRoom, IChatServer
from .session import ChatSession

__all__ = [
    "Chat",
    "ChatError",
    "ChatSession",
    "IChatClient",
    "ChatEvent",
    "ChatFactory",
    "ChatProtocol",
    "ChatRoom",
    "ChatServer",
    "EventBatch",
    "FrontEndFactory",
    "IChatMember",
    "IChatRoom",
    "IChatServer",
]
