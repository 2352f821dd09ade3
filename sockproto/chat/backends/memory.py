# -*- test-case-name: tests.test_chat_rooms -*-
"""
The chat's in-process back end: its rooms and nicknames, in this process
alone.  Every answer is a Deferred that has already fired.
"""

import itertools
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import implementer

from ...logs import SafeLogger
from ...server import default_reactor
from ..events import (
    ACTION,
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
from ..hub import register_in_process
from ..interfaces import (
    ChatError,
    IChatMember,
    IChatRoom,
    IChatServer,
    InvalidNickError,
    NickInUseError,
)
from ..names import NICK_RULE, nick_key, valid_nick

__all__ = ["ChatRoom", "ChatServer", "ChatStats"]

log = SafeLogger()


class ChatStats:
    """
    What the chat counts, for C{--metrics}: lines said by this process's
    clients, and deliveries to them (one per event and member, counted
    once per batch).
    """

    __slots__ = ("lines", "deliveries")

    def __init__(self) -> None:
        self.lines = 0
        self.deliveries = 0


@implementer(IChatRoom)
class ChatRoom:
    """
    A room in this process.  Events published during one reactor turn are
    delivered together at the end of it, as one L{EventBatch}.

    A member whose delivery fails is logged and dropped from the room at
    the end of the delivery loop; the others still get every event.

    @ivar quietAbove: past this many members, joins, leaves and nick
        changes are no longer announced, so that a crowd arriving costs
        O(members) rather than O(members squared).
    @ivar emptied: called with the room when its last member leaves.
    """

    def __init__(
        self,
        name: str,
        clock: IReactorTime,
        historySize: int = 20,
        quietAbove: int = 200,
        emptied: Optional[Callable[["ChatRoom"], None]] = None,
        stats: Optional[ChatStats] = None,
    ) -> None:
        self.name = name
        self.stats = stats if stats is not None else ChatStats()
        self.clock = clock
        self.quietAbove = quietAbove
        self.emptied = emptied
        self.members: Dict[int, IChatMember] = {}
        self.history: Deque[ChatEvent] = deque(maxlen=historySize)
        self._pending: List[ChatEvent] = []
        self._flushCall: Optional[IDelayedCall] = None

    def join(self, member: IChatMember) -> "Deferred[List[ChatEvent]]":
        self.flush()
        self.members[id(member)] = member
        self._announce(
            ChatEvent(JOIN, self.name, member.nick, time=self.clock.seconds())
        )
        return succeed(list(self.history))

    def leave(self, member: IChatMember, reason: str) -> "Deferred[None]":
        self.remove(member, reason)
        return succeed(None)

    def quit(self, member: IChatMember, reason: str) -> "Deferred[None]":
        self.remove(member, reason, QUIT)
        return succeed(None)

    def remove(self, member: IChatMember, reason: str, kind: str = LEAVE) -> None:
        """
        L{leave} (or, with C{kind} L{QUIT}, L{quit}), at once.
        """
        self.flush()  # what was said before it left, in order
        if self.members.pop(id(member), None) is None:
            return
        if self.members:
            self._announce(
                ChatEvent(
                    kind, self.name, member.nick, reason, time=self.clock.seconds()
                )
            )
            return
        self._pending = []
        if self.emptied is not None:
            self.emptied(self)

    def say(self, member: IChatMember, text: str) -> "Deferred[None]":
        self._remember(
            ChatEvent(MESSAGE, self.name, member.nick, text, time=self.clock.seconds())
        )
        return succeed(None)

    def act(self, member: IChatMember, text: str) -> "Deferred[None]":
        self._remember(
            ChatEvent(ACTION, self.name, member.nick, text, time=self.clock.seconds())
        )
        return succeed(None)

    def notice(self, member: IChatMember, text: str) -> "Deferred[None]":
        self.stats.lines += 1
        self._publish(
            ChatEvent(NOTICE, self.name, member.nick, text, time=self.clock.seconds())
        )
        return succeed(None)

    def renamed(self, member: IChatMember, old: str, new: str) -> None:
        """
        Announce that C{member}, formerly C{old}, is now C{new}.
        """
        if id(member) in self.members:
            self._announce(
                ChatEvent(NICK, self.name, old, new, time=self.clock.seconds())
            )

    def nicks(self) -> "Deferred[List[str]]":
        return succeed(self.memberNicks())

    def memberNicks(self) -> List[str]:
        """
        L{nicks}, at once.
        """
        return [member.nick for member in self.members.values()]

    def _remember(self, event: ChatEvent) -> None:
        self.stats.lines += 1
        self.history.append(event)
        self._publish(event)

    def _announce(self, event: ChatEvent) -> None:
        if len(self.members) <= self.quietAbove:
            self._publish(event)

    def _publish(self, event: ChatEvent) -> None:
        self._pending.append(event)
        if self._flushCall is None:
            self._flushCall = self.clock.callLater(0, self.flush)

    @property
    def pending(self) -> bool:
        """Whether events wait for the end of this reactor turn."""
        return bool(self._pending)

    def flush(self) -> None:
        if self._flushCall is not None:
            if self._flushCall.active():
                self._flushCall.cancel()
            self._flushCall = None
        if not self._pending:
            return
        batch = EventBatch(tuple(self._pending))
        self._pending = []
        self.deliverBatch(batch)

    def deliverBatch(self, batch: EventBatch) -> None:
        """
        Deliver C{batch} to every member of this process.
        """
        for member in self.fanOut(batch):
            self.remove(member, "delivery failed")

    def fanOut(self, batch: EventBatch) -> List[IChatMember]:
        """
        Give C{batch} to every member, logging each that fails.

        @return: the members whose delivery failed, for the caller to drop.
        """
        failed = []
        self.stats.deliveries += len(batch.events) * len(self.members)
        for member in list(self.members.values()):
            try:
                member.deliver(batch)
            except Exception:
                log.failure("chat: delivery to {nick} failed", nick=member.nick)
                failed.append(member)
        return failed


@implementer(IChatServer)
class ChatServer:
    """
    Nicknames and rooms of a chat served by this process.

    A room is forgotten, with its history, when its last member leaves
    (but for the default room).

    @ivar maxRooms: how many rooms may exist at once (0: no limit).
    @ivar reserved: tells whether a nickname is registered: guest
        nicknames skip those.
    @ivar newRoom: makes the room called C{name} for this server (by
        default a L{ChatRoom}); a back end that contains this one gives
        its own, to be told when the room empties.
    """

    reserved: Callable[[str], bool] = staticmethod(lambda nick: False)

    def __init__(
        self,
        name: str,
        clock: Optional[IReactorTime] = None,
        historySize: int = 20,
        defaultRoom: str = "lobby",
        quietAbove: int = 200,
        maxRooms: int = 1000,
        newRoom: Optional[Callable[[str], ChatRoom]] = None,
    ) -> None:
        if clock is None:
            clock = default_reactor()
        self.name = name
        self.clock: Any = clock
        self.historySize = historySize
        self.defaultRoom = defaultRoom
        self.quietAbove = quietAbove
        self.maxRooms = maxRooms
        self._members: Dict[str, IChatMember] = {}
        self._rooms: Dict[str, ChatRoom] = {}
        self._guests = itertools.count(1)
        self.stats = ChatStats()
        self.newRoom: Callable[[str], ChatRoom] = newRoom or self._newRoom

    def register(self, member: IChatMember) -> "Deferred[str]":
        while True:
            nick = f"guest{next(self._guests)}"
            key = nick_key(nick)
            if key not in self._members and not self.reserved(nick):
                self._members[key] = member
                return succeed(nick)

    def rename(self, member: IChatMember, nick: str) -> "Deferred[None]":
        try:
            self.checkRename(member, nick)
        except ChatError:
            return fail()
        old = member.nick
        self.forget(member)
        self.hold(member, nick)
        for room in list(self._rooms.values()):
            room.renamed(member, old, nick)
        return succeed(None)

    def checkRename(self, member: IChatMember, nick: str) -> None:
        """
        Whether C{member} may be called C{nick}, as far as this process
        knows.

        @raise InvalidNickError: if C{nick} breaks the rules.
        @raise NickInUseError: if another member here holds it (or a
            look-alike).
        """
        if not valid_nick(nick):
            raise InvalidNickError(f"invalid nickname {nick!r}: {NICK_RULE}")
        holder = self._members.get(nick_key(nick))
        if holder is not None and holder is not member:
            same = holder.nick.lower() == nick.lower()
            by = "" if same else f" (by {holder.nick})"
            raise NickInUseError(f"nickname {nick} is taken{by}")

    def unregister(self, member: IChatMember) -> "Deferred[None]":
        self.forget(member)
        return succeed(None)

    def hold(self, member: IChatMember, nick: str) -> None:
        """
        Record that C{member} holds C{nick} (L{forget} its old one first).
        """
        self._members[nick_key(nick)] = member

    def forget(self, member: IChatMember) -> None:
        """
        Free C{member}'s nickname here.
        """
        key = nick_key(member.nick)
        if self._members.get(key) is member:
            del self._members[key]

    def holds(self, nick: str) -> bool:
        """
        Whether a member here holds C{nick} or a look-alike of it.
        """
        return nick_key(nick) in self._members

    def members(self) -> List[IChatMember]:
        """
        This process's members.
        """
        return list(self._members.values())

    def find(self, nick: str) -> Optional[IChatMember]:
        """
        The member of this process using C{nick} (ignoring case), if any.
        """
        member = self._members.get(nick_key(nick))
        if member is None or member.nick.lower() != nick.lower():
            return None
        return member

    def inUse(self, nick: str) -> "Deferred[bool]":
        return succeed(self.find(nick) is not None)

    def tell(
        self, member: IChatMember, nick: str, text: str, kind: str = PRIVATE
    ) -> "Deferred[ChatEvent]":
        target = self.find(nick)
        if target is None:
            return fail(ChatError(f"no such nickname: {nick}"))
        event = ChatEvent(
            kind, "", member.nick, text, target.nick, time=self.clock.seconds()
        )
        target.receive(event)
        return succeed(event)

    def notify(
        self, member: IChatMember, nick: str, text: str
    ) -> "Deferred[ChatEvent]":
        return self.tell(member, nick, text, PRIVATE_NOTICE)

    def room(self, name: str) -> "Deferred[IChatRoom]":
        try:
            return succeed(self.getRoom(name))
        except ChatError:
            return fail()

    def getRoom(self, name: str) -> ChatRoom:
        """
        L{room}, at once.

        @raise ChatError: when it would be one room too many.
        """
        room = self._rooms.get(name)
        if room is None:
            if self.maxRooms and len(self._rooms) >= self.maxRooms:
                raise ChatError(
                    f"too many rooms ({len(self._rooms)}): join one of /rooms"
                )
            room = self._rooms[name] = self.newRoom(name)
        return room

    def _newRoom(self, name: str) -> ChatRoom:
        return ChatRoom(
            name,
            self.clock,
            self.historySize,
            self.quietAbove,
            self.roomEmptied,
            self.stats,
        )

    def counts(self) -> Dict[str, float]:
        return {
            "lines": self.stats.lines,
            "deliveries": self.stats.deliveries,
            "members": len(self._members),
            "rooms": len(self._rooms),
        }

    def roomEmptied(self, room: ChatRoom) -> None:
        """
        Called by C{room} when its last member left: forget it.
        """
        if room.name != self.defaultRoom and self._rooms.get(room.name) is room:
            del self._rooms[room.name]

    def rooms(self) -> "Deferred[List[Tuple[str, int]]]":
        return succeed(
            sorted((name, len(room.members)) for name, room in self._rooms.items())
        )

    def flush(self) -> None:
        for room in list(self._rooms.values()):
            room.flush()


register_in_process(ChatServer)
