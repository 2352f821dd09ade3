"""
The chat service: a multi-user line chat usable from telnet and nc.

The room logic (L{ChatServer}, L{ChatRoom}) sits behind the interfaces of
L{sockproto.chat.interfaces}, apart from the line protocol
(L{ChatProtocol}), so that other front ends and other room back ends can
come later without touching either.
"""

from .events import ChatEvent, EventBatch
from .interfaces import ChatError, IChatClient, IChatMember, IChatRoom, IChatServer
from .protocol import ChatFactory, ChatProtocol
from .rooms import ChatRoom, ChatServer
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
    "IChatMember",
    "IChatRoom",
    "IChatServer",
]
