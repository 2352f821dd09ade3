# -*- test-case-name: tests.test_chat_rooms -*-
"""
The chat's rooms and nicknames, in one process.
"""

import itertools
import re
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import implementer

from .events import ACTION, JOIN, LEAVE, MESSAGE, NICK, ChatEvent, EventBatch
from .interfaces import IChatMember, IChatRoom, IChatServer

__all__ = ["ChatRoom", "ChatServer", "NICK_RULE", "valid_nick", "valid_room"]

NICK_RULE = "1 to 16 letters, digits, _ or -, starting with a letter"
_NICK = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,15}\Z")
_ROOM = re.compile(r"#?([A-Za-z0-9_-]{1,32})\Z")


def valid_nick(nick: str) -> bool:
    """
    Whether C{nick} follows L{NICK_RULE}: ASCII only, so that no two
    nicknames look alike.
    """
    return _NICK.match(nick) is not None


def valid_room(name: str) -> Optional[str]:
    """
    The room name C{name} stands for (lower case, no '#'), or None.
    """
    match = _ROOM.match(name)
    return match.group(1).lower() if match else None


@implementer(IChatRoom)
class ChatRoom:
    """
    A room in this process.  Events published during one reactor turn are
    delivered together at the end of it, as one L{EventBatch}.

    @ivar quietAbove: past this many members, joins, leaves and nick
        changes are no longer announced, so that a crowd arriving costs
        O(members) rather than O(members squared).
    """

    def __init__(
        self,
        name: str,
        clock: IReactorTime,
        historySize: int = 20,
        quietAbove: int = 200,
    ) -> None:
        self.name = name
        self.clock = clock
        self.quietAbove = quietAbove
        self.members: Dict[int, IChatMember] = {}
        self.history: Deque[ChatEvent] = deque(maxlen=historySize)
        self._pending: List[ChatEvent] = []
        self._flushCall: Optional[IDelayedCall] = None

    def join(self, member: IChatMember) -> Sequence[ChatEvent]:
        self.flush()
        self.members[id(member)] = member
        self._announce(ChatEvent(JOIN, self.name, member.nick))
        return list(self.history)

    def leave(self, member: IChatMember, reason: str) -> None:
        self.flush()
        if self.members.pop(id(member), None) is not None:
            self._announce(ChatEvent(LEAVE, self.name, member.nick, reason))

    def say(self, member: IChatMember, text: str) -> None:
        self._remember(ChatEvent(MESSAGE, self.name, member.nick, text))

    def act(self, member: IChatMember, text: str) -> None:
        self._remember(ChatEvent(ACTION, self.name, member.nick, text))

    def renamed(self, member: IChatMember, old: str) -> None:
        self._announce(ChatEvent(NICK, self.name, old, member.nick))

    def nicks(self) -> List[str]:
        return [member.nick for member in self.members.values()]

    def _remember(self, event: ChatEvent) -> None:
        self.history.append(event)
        self._publish(event)

    def _announce(self, event: ChatEvent) -> None:
        if len(self.members) <= self.quietAbove:
            self._publish(event)

    def _publish(self, event: ChatEvent) -> None:
        self._pending.append(event)
        if self._flushCall is None:
            self._flushCall = self.clock.callLater(0, self.flush)

    def flush(self) -> None:
        if self._flushCall is not None:
            if self._flushCall.active():
                self._flushCall.cancel()
            self._flushCall = None
        if not self._pending:
            return
        batch = EventBatch(tuple(self._pending))
        self._pending = []
        for member in list(self.members.values()):
            member.deliver(batch)


@implementer(IChatServer)
class ChatServer:
    """
    Nicknames and rooms of a chat served by this process.
    """

    def __init__(
        self,
        name: str,
        clock: Optional[IReactorTime] = None,
        historySize: int = 20,
        defaultRoom: str = "lobby",
        quietAbove: int = 200,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = reactor  # type: ignore[assignment]
        self.name = name
        self.clock: Any = clock
        self.historySize = historySize
        self.defaultRoom = defaultRoom
        self.quietAbove = quietAbove
        self._members: Dict[str, IChatMember] = {}
        self._rooms: Dict[str, ChatRoom] = {}
        self._guests = itertools.count(1)

    def register(self, member: IChatMember) -> str:
        while True:
            nick = f"guest{next(self._guests)}"
            if nick not in self._members:
                self._members[nick] = member
                return nick

    def rename(self, member: IChatMember, nick: str) -> Optional[str]:
        if not valid_nick(nick):
            return f"invalid nickname {nick!r}: {NICK_RULE}"
        holder = self._members.get(nick.lower())
        if holder is not None and holder is not member:
            return f"nickname {nick} is taken"
        self._members.pop(member.nick.lower(), None)
        self._members[nick.lower()] = member
        return None

    def unregister(self, member: IChatMember) -> None:
        if self._members.get(member.nick.lower()) is member:
            del self._members[member.nick.lower()]

    def find(self, nick: str) -> Optional[IChatMember]:
        return self._members.get(nick.lower())

    def room(self, name: str) -> ChatRoom:
        room = self._rooms.get(name)
        if room is None:
            room = self._rooms[name] = ChatRoom(
                name, self.clock, self.historySize, self.quietAbove
            )
        return room

    def rooms(self) -> List[Tuple[str, int]]:
        self._forgetEmptyRooms()
        return sorted((name, len(room.members)) for name, room in self._rooms.items())

    def _forgetEmptyRooms(self) -> None:
        for name, room in list(self._rooms.items()):
            if not room.members and name != self.defaultRoom:
                room.flush()
                del self._rooms[name]

    def flush(self) -> None:
        for room in list(self._rooms.values()):
            room.flush()
