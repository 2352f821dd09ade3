"""
The chat service: a multi-user line chat usable from telnet and nc.

The room logic (L{ChatServer}, L{ChatRoom}) sits behind the interfaces of
L{sockproto.chat.interfaces}, apart from the line protocol
(L{ChatProtocol}); the web page and IRC are front ends on the same rooms
(L{FrontEndFactory}), and Redis another room back end.
"""

from .backends.memory import ChatRoom, ChatServer
from .events import ChatEvent, EventBatch
from .frontends.line import ChatFactory, ChatProtocol, FrontEndFactory
from .interfaces import ChatError, IChatClient, IChatMember, IChatRoom, IChatServer
from .session import ChatSession

__all__ = [
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
