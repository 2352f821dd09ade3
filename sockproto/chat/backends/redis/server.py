# -*- test-case-name: tests.test_chat_shared -*-
"""
A chat shared by many processes, on many machines, through Redis.

What goes over Redis (L{RedisStore} says how): nickname claims, each
room's members, the list of rooms, each room's events (one message per
room per reactor turn, numbered by the broker, kept in a capped stream for
history and backfill, and published on the room's channel), private
messages (on the recipient's process's channel), and each process's
heartbeat.  What stays in the process: its connections, the fan-out to
them, and, while Redis is away, the rooms as this process alone sees
them.

L{RedisChatServer} I{contains} an in-process L{ChatServer} (its members
and rooms here, and the whole chat while Redis is away) and switches
between the two modes in one place, L{RedisChatServer.switch}.

Every process delivers a room's events, its own clients' lines included,
in the order of the broker's numbers: all members see one order.  A gap in
the numbers (a message lost while reconnecting) is filled from the stream
before anything later is delivered.
"""

import os
import socket
import uuid
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from twisted.application.service import Service
from twisted.internet.defer import Deferred, FirstError, fail, gatherResults, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from zope.interface import implementer

from ....logs import SafeLogger
from ....server import default_reactor
from ...events import JOIN, PRIVATE, PRIVATE_NOTICE, QUIT, ChatEvent, EventBatch
from ...interfaces import ChatError, IChatMember, IChatRoom, IChatServer, NickInUseError
from ...names import nick_key
from ..memory import ChatRoom, ChatServer
from .resp import RedisError, RedisLink
from .room import REJOINED, SERVER_LOST, SharedRoom
from .store import LOST, MAX_NUMBER, RedisStore
from .wire import MalformedMessageError, decode_events, encode_events

__all__ = ["BrokerService", "RedisChatServer"]

log = SafeLogger()

UNAVAILABLE = "chat network unavailable: only people on this server see your lines"
BACK = "chat network back: everyone in your room sees your lines again"


@implementer(IChatServer)
class RedisChatServer:
    """
    Nicknames and rooms shared with every process using the same Redis
    (and prefix).  While Redis is unreachable, this process goes on as the
    in-process L{ChatServer} it contains, for its own clients, and tells
    them so.

    (Over 300 lines: the link's life — coming up, going down, reclaiming
    what this process held, heartbeats and reaping — is one story with the
    nickname and room operations it guards; the Redis side of each is in
    L{RedisStore}, the ordering in L{RoomFeed}.)

    @ivar local: the in-process chat inside: this process's members and
        rooms, and the whole chat while Redis is away.
    @ivar up: whether rooms are shared through Redis (see L{switch}).
    @ivar heartbeat: seconds between this process's heartbeats; a process
        silent for two heartbeats is reaped by the others (its members
        leave with the reason "server lost"), so within three.
    """

    historyScan = 4
    lag = 0.0
    """Seconds the last heartbeat took to Redis and back."""
    startupWait = 5.0
    """
    Seconds the ports wait at start-up for Redis, at most, before they
    accept connections anyway (see L{whenReady}).
    """

    def __init__(
        self,
        name: str,
        link: RedisLink,
        clock: Optional[IReactorTime] = None,
        historySize: int = 20,
        defaultRoom: str = "lobby",
        quietAbove: int = 200,
        maxRooms: int = 1000,
        prefix: str = "sockproto:",
        heartbeat: float = 5.0,
        streamLength: int = 1000,
    ) -> None:
        if clock is None:
            clock = default_reactor()
        self.name = name
        self.clock: Any = clock
        self.historySize = historySize
        self.defaultRoom = defaultRoom
        self.quietAbove = quietAbove
        self.maxRooms = maxRooms
        self.heartbeat = heartbeat
        self.up = False
        self.local = ChatServer(
            name,
            clock,
            historySize,
            defaultRoom,
            quietAbove,
            maxRooms,
            newRoom=self._newRoom,
        )
        self.stats = self.local.stats
        self.node = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.link = link
        self.store = RedisStore(link, self.node, prefix, streamLength)
        self._wasUp = False
        self._beat = LoopingCall(self._beatIfUp)
        self._beat.clock = self.clock
        self._rooms: Dict[str, SharedRoom] = {}
        self._roomsByChannel: Dict[bytes, SharedRoom] = {}
        self._privateChannel = self.store.nodeChannel()
        self._waiting: Optional[List[Deferred[None]]] = []
        self._toldAlone: Set[int] = set()
        self._since: Dict[int, float] = {}
        self._takenAlone: Set[int] = set()
        self._lastBeat = -1.0
        self._rejoining = False
        self._refusal: Optional[str] = None
        self.store.onRefused = self.refused
        link.channels.add(self._privateChannel)
        link.onUp, link.onDown, link.onMessage = (
            self.linkUp,
            self.linkDown,
            self.message,
        )
        link.onUnreachable = self.ready
        link.onResubscribed = self.resubscribed
        self.service = BrokerService(self)

    @property
    def reserved(self) -> Callable[[str], bool]:
        """Tells whether a nickname is registered (the local chat's)."""
        return self.local.reserved

    @reserved.setter
    def reserved(self, reserved: Callable[[str], bool]) -> None:
        self.local.reserved = reserved

    def switch(self, up: bool) -> None:
        """
        Share rooms through Redis (C{up}), or serve this process's clients
        alone: the one place the mode changes, for the server and each room.
        """
        self.up = up
        for room in list(self._rooms.values()):
            if up:
                room.goShared()
            else:
                room.goAlone()

    def logFailure(self, failure: Failure, doing: str) -> None:
        while isinstance(failure.value, FirstError):
            failure = failure.value.subFailure
        log.warn(
            "chat: {doing} over Redis failed: {why}",
            doing=doing,
            why=failure.getErrorMessage(),
        )

    def dropped(self, where: str, why: str) -> None:
        log.warn(
            "chat: dropped a malformed message on {where}: {why}", where=where, why=why
        )

    # --- the link ---------------------------------------------------------

    def whenReady(self) -> "Deferred[None]":
        """
        Fires once this process is ready to take clients: it shares rooms
        through Redis, or the first attempt to reach Redis failed (it then
        serves its clients alone until Redis is back), or L{startupWait}
        passed.  A client accepted before would miss the shared rooms.
        """
        if self._waiting is None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return d

    def ready(self) -> None:
        """
        Fire every L{whenReady}: from now on, ports accept connections.
        """
        waiting, self._waiting = self._waiting, None
        for d in waiting or ():
            d.callback(None)

    def linkUp(self) -> None:
        """
        Redis is reachable: claim our nicknames and rooms again, fill what
        was missed, and start beating.
        """
        self.rejoin().addCallback(lambda _: self.ready())
        if not self._beat.running:
            self._beat.start(self.heartbeat, now=False)

    def rejoin(self) -> "Deferred[None]":
        """
        Come back to the chat network: unless Redis may evict our keys,
        beat, then claim our nicknames and rooms again.  Failing, this
        process stays alone, and the next heartbeat tries again.
        """
        if self._rejoining:
            return succeed(None)
        self._rejoining = True
        d = self.store.evictionPolicy()
        d.addErrback(self._policyUnknown)
        d.addCallback(self._checkPolicy)
        d.addCallback(lambda _: self.beat(rejoining=True))
        d.addCallback(lambda _: self.reclaim())
        d.addErrback(self._notRejoined)

        def done(result: object) -> None:
            self._rejoining = False

        return d.addBoth(done)

    def _policyUnknown(self, failure: Failure) -> Optional[Failure]:
        if not failure.check(RedisError):
            return failure  # Redis went away again
        log.info(
            "chat: cannot read Redis's maxmemory-policy ({why}); going on",
            why=failure.getErrorMessage()[:80],
        )
        return None

    def _checkPolicy(self, policy: Optional[str]) -> None:
        if policy is None:
            return
        refusal = f"evicting ({policy})"
        if self._refusal != refusal:
            self._refusal = refusal
            log.error(
                "chat: Redis may evict keys when full (maxmemory-policy {policy}):"
                " the shared chat needs maxmemory-policy noeviction, so this"
                " process serves its clients alone until it is set",
                policy=policy,
            )
        raise _EvictingError(policy)

    def _notRejoined(self, failure: Failure) -> None:
        if failure.check(_EvictingError):
            if self.up:
                self._goAlone()
            return
        if failure.check(ConnectionLost) or not self.link.up:
            return  # the link says so, once
        if not failure.check(ChatError):
            self.logFailure(failure, "rejoining the chat network")

    def refused(self, failure: Failure) -> None:
        """
        Redis refused a command (out of memory, a script error, a key of
        the wrong type): as if it were away.  Say so once, serve this
        process's clients alone, and try again at the next heartbeat.
        """
        why = failure.getErrorMessage()[:200]
        if self._refusal is None:
            self._refusal = why
            log.warn(
                "chat: Redis refused a command ({why}): serving this process's"
                " clients alone until it accepts them again",
                why=why,
            )
        if self.up:
            self._goAlone()

    def _goAlone(self) -> None:
        self.switch(False)
        self._tellAll(UNAVAILABLE)

    def resubscribed(self) -> None:
        """
        The link heard nothing for a while (its subscriber connection was
        lost and is back): every room reads what it missed from its stream.
        """
        for room in list(self._rooms.values()):
            room.sync()

    def linkDown(self) -> None:
        """
        Redis is gone: rooms go on in this process; tell their members.
        """
        if not self.up:
            return
        self._goAlone()

    def _tellAll(self, text: str) -> None:
        for member in self.local.members():
            if text == UNAVAILABLE:
                if id(member) in self._toldAlone:
                    continue
                self._toldAlone.add(id(member))
            elif text == BACK:
                if id(member) not in self._toldAlone:
                    continue  # never told it was alone: nothing to say
                self._toldAlone.discard(id(member))
            notice = getattr(member, "notice", None)
            if notice is not None:
                notice(text)

    def tellAlone(self, member: IChatMember) -> None:
        """
        Tell C{member}, once, that only this process's people see its
        lines: it arrived while Redis was away (at start-up too, when Redis
        could not be reached or refused the login).
        """
        if id(member) in self._toldAlone:
            return
        self._toldAlone.add(id(member))
        notice = getattr(member, "notice", None)
        if notice is not None:
            notice(UNAVAILABLE)

    def reclaim(self) -> "Deferred[None]":
        """
        Claim every local nickname and membership again (a claim taken
        meanwhile by another process renames ours to a guest), then sync
        every local room.  Nicknames held from before Redis went away are
        claimed first; one taken while away gives way to an earlier holder.
        """
        members = self.local.members()
        before = [m for m in members if id(m) not in self._takenAlone]
        after = [m for m in members if id(m) in self._takenAlone]
        d = gatherResults([self._reclaimNick(m) for m in before], consumeErrors=True)
        d.addCallback(
            lambda _: gatherResults(
                [self._reclaimNick(m) for m in after], consumeErrors=True
            )
        )
        d.addCallback(lambda _: self._rejoinRooms())

        def back(_: Any) -> None:
            self._refusal = None
            self.switch(True)
            if self._wasUp:
                self._tellAll(BACK)
            self._toldAlone = set()
            if not self._wasUp:
                log.info("chat: sharing rooms through Redis as {node}", node=self.node)
            self._wasUp = True

        return d.addCallback(back)

    def _reclaimNick(self, member: IChatMember) -> "Deferred[None]":
        alone = id(member) in self._takenAlone
        since = self._since.get(id(member), 0.0)
        d = self.store.claim(member.nick, since, alone=alone, again=not alone)

        def claimed(holder: Optional[str]) -> Optional["Deferred[None]"]:
            if holder is None:
                return None
            return self._renameToGuest(member)

        return d.addCallback(claimed)

    def _held(self, member: IChatMember, nick: str) -> None:
        """
        C{member} now holds C{nick}: when, and whether Redis was away.
        """
        self.local.hold(member, nick)
        self._since[id(member)] = self.clock.seconds()
        self._takenAlone.discard(id(member))

    def _renameToGuest(self, member: IChatMember) -> "Deferred[None]":
        old = member.nick
        self.local.forget(member)
        d = self._guest(member)

        def renamed(nick: str) -> None:
            for room in list(self._rooms.values()):
                room.renamed(member, old, nick)
            changed = getattr(member, "nickChanged", None)
            if changed is not None:
                changed(nick, f"{old} was taken on another server meanwhile")

        return d.addCallback(renamed)

    def _rejoinRooms(self) -> "Deferred[Any]":
        steps: List[Deferred[Any]] = []
        for room in list(self._rooms.values()):
            for member in list(room.members.values()):
                d = self.store.join(room.name, member.nick)
                d.addCallback(self._rejoined, room, member)
                steps.append(d)
            steps.append(self.store.addRoom(room.name, 0))
            steps.append(room.sync())
        return gatherResults(steps, consumeErrors=True)

    def _rejoined(self, added: bool, room: SharedRoom, member: IChatMember) -> None:
        if added:  # we had been reaped: say we are back (to the others)
            event = ChatEvent(
                JOIN, room.name, member.nick, REJOINED, time=self.clock.seconds()
            )
            self.publish(room, [event])

    def _beatIfUp(self) -> None:
        if not self.link.up:
            return
        self.link.ping().addErrback(lambda _: None)  # a stalled subscriber, too
        if not self.up:
            self.rejoin()
            return
        d = self.store.evictionPolicy()
        d.addCallback(self._checkPolicy)
        d.addCallback(lambda _: self.beat())
        d.addErrback(self._notRejoined)

    def beat(self, rejoining: bool = False) -> "Deferred[None]":
        """
        Say this process is alive, and reap any process that is not.
        """
        d = self.store.heartbeat(self.heartbeat * 2)
        sent = self.clock.seconds()

        def beaten(reply: Tuple[bool, List[str]]) -> Optional["Deferred[Any]"]:
            self.lag = self.clock.seconds() - sent
            self._lastBeat = self.clock.seconds()
            new, deadNodes = reply
            for node in deadNodes:
                self.reap(node)
            if new and self.up and not rejoining:  # we were reaped ourselves
                log.warn("chat: another process took this one for dead; rejoining")
                self._goAlone()
                return self.rejoin()
            return None

        return d.addCallback(beaten)

    @property
    def stale(self) -> bool:
        """
        Whether this process may have been taken for dead: its last
        heartbeat is older than the others wait for (it was paused, or its
        reactor blocked).  Until it beats again, it publishes nothing.
        """
        if self._lastBeat < 0 or not self._beat.running:
            return False
        late = self.clock.seconds() - self._lastBeat
        return late > max(1.8 * self.heartbeat, self.heartbeat + self.link.timeout)

    def reap(self, node: str, reason: str = SERVER_LOST) -> "Deferred[None]":
        """
        Take process C{node}'s members out of every room, with C{reason},
        and free their nicknames.
        """
        if node != self.node:
            log.warn(
                "chat: process {node} stopped beating: its members leave", node=node
            )
        d: Deferred[Any] = self.store.reap(node, self.defaultRoom)

        def announce(gone: List[Tuple[str, str, int]]) -> None:
            byRoom: Dict[str, List[ChatEvent]] = {}
            for room, nick, left in gone:
                if left:
                    event = ChatEvent(
                        QUIT, room, nick, reason, time=self.clock.seconds()
                    )
                    byRoom.setdefault(room, []).append(event)
            for room, events in byRoom.items():
                d = self.store.publish(room, encode_events(events))
                d.addErrback(self.logFailure, f"announcing {node}'s loss")

        d.addCallback(announce)
        return d.addErrback(self.logFailure, f"reaping {node}")

    # --- publishing and receiving -----------------------------------------

    def publish(self, room: SharedRoom, events: Sequence[ChatEvent]) -> None:
        """
        Publish C{events} of C{room}, as one message; if that fails, at
        least this process's members get them.
        """
        if self.stale:
            # Paused past the others' patience: our nicknames may be
            # someone else's now.  Claim them again before publishing.
            room.deliverBatch(EventBatch(tuple(events)))
            log.warn("chat: this process was silent too long; rejoining first")
            self._goAlone()
            self.rejoin()
            return
        d = self.store.publish(room.name, encode_events(events))
        d.addErrback(lambda _: room.deliverUnconfirmed(events))

    def message(self, channel: bytes, data: bytes) -> None:
        """
        Called with each message on a channel this process listens to.
        """
        if channel == self._privateChannel:
            return self._private(data)
        room = self._roomsByChannel.get(channel)
        if room is None:
            return
        seq, _, body = data.partition(b" ")
        if not seq.isdigit():
            return self.dropped(room.name, "no sequence number")
        if len(seq) > 19 or int(seq) > MAX_NUMBER:
            return self.dropped(room.name, f"number {seq[:24]!r} past Redis's")
        room.received(int(seq), body)

    def _private(self, data: bytes) -> None:
        if data.startswith(LOST):
            return self._lost(data[len(LOST) :].decode("utf-8", "replace"))
        try:
            events = decode_events(data)
        except MalformedMessageError as e:
            return self.dropped("the private channel", str(e))
        for event in events:
            private = event.kind in (PRIVATE, PRIVATE_NOTICE)
            target = self.local.find(event.target) if private else None
            if target is not None:
                target.receive(event)

    def _lost(self, key: str) -> None:
        """
        Another process says it claimed, as an earlier holder, a nickname
        of ours taken while Redis was away: check, then rename ours.
        """
        mine = [m for m in self.local.members() if nick_key(m.nick) == key]
        if not mine:
            return
        member = mine[0]
        d = self.store.holder(member.nick)

        def checked(holder: Optional[Tuple[str, str]]) -> Any:
            if holder is not None and holder[0] != self.node:
                return self._renameToGuest(member)
            return None

        d.addCallback(checked)
        d.addErrback(self.logFailure, "checking a nickname")

    # --- nicknames --------------------------------------------------------

    def register(self, member: IChatMember) -> "Deferred[str]":
        if not self.up:
            self._since[id(member)] = self.clock.seconds()
            self._takenAlone.add(id(member))
            return self.local.register(member)
        return self._guest(member)

    def _guest(self, member: IChatMember) -> "Deferred[str]":
        d = self.store.nextGuest()

        def numbered(number: int) -> "Deferred[str]":
            nick = f"guest{number}"
            if self.reserved(nick) or self.local.holds(nick):
                return self._guest(member)
            return self.store.claim(nick).addCallback(claimed, nick)

        def claimed(holder: Optional[str], nick: str) -> Any:
            if holder is not None:
                return self._guest(member)
            self._held(member, nick)
            return nick

        return d.addCallback(numbered)

    def rename(self, member: IChatMember, nick: str) -> "Deferred[None]":
        if not self.up:
            renamed = self.local.rename(member, nick)

            def takenAlone(result: None) -> None:
                self._since[id(member)] = self.clock.seconds()
                self._takenAlone.add(id(member))

            return renamed.addCallback(takenAlone)
        try:
            self.local.checkRename(member, nick)  # the same answer as alone
        except ChatError:
            return fail()
        old = member.nick
        d = self.store.claim(nick)

        def claimed(other: Optional[str]) -> "Deferred[None]":
            if other is not None:
                by = "" if other.lower() == nick.lower() else f" (by {other})"
                raise NickInUseError(f"nickname {nick} is taken{by}")
            self.local.forget(member)
            self._held(member, nick)
            steps: List[Deferred[Any]] = []
            if nick_key(old) != nick_key(nick):
                steps.append(self.store.unclaim(old))
            rooms = [r.name for r in self._rooms.values() if id(member) in r.members]
            steps.append(self.store.renameMember(old, nick, rooms))
            for room in list(self._rooms.values()):
                room.renamed(member, old, nick)
            # The nickname is ours once claimed: the bookkeeping after it
            # is done again by reclaim() if Redis goes away meanwhile.
            d = gatherResults(steps, consumeErrors=True)
            d.addErrback(self.logFailure, "renaming")
            return d.addCallback(lambda _: None)

        return d.addCallback(claimed)

    def unregister(self, member: IChatMember) -> "Deferred[None]":
        nick = member.nick
        self.local.forget(member)
        self._toldAlone.discard(id(member))
        self._since.pop(id(member), None)
        self._takenAlone.discard(id(member))
        if not self.up:
            return succeed(None)
        d = self.store.unclaim(nick)
        d.addErrback(self.logFailure, f"freeing {nick}")
        return d.addCallback(lambda _: None)

    def find(self, nick: str) -> Optional[IChatMember]:
        """
        The member of this process using C{nick} (ignoring case), if any.
        """
        return self.local.find(nick)

    def inUse(self, nick: str) -> "Deferred[bool]":
        if not self.up:
            return self.local.inUse(nick)
        return self.store.holder(nick).addCallback(lambda holder: holder is not None)

    def notify(
        self, member: IChatMember, nick: str, text: str
    ) -> "Deferred[ChatEvent]":
        return self.tell(member, nick, text, PRIVATE_NOTICE)

    def tell(
        self, member: IChatMember, nick: str, text: str, kind: str = PRIVATE
    ) -> "Deferred[ChatEvent]":
        if not self.up or self.local.find(nick) is not None:
            return self.local.tell(member, nick, text, kind)

        def send(holder: Optional[Tuple[str, str]]) -> "Deferred[ChatEvent]":
            if holder is None:
                raise ChatError(f"no such nickname: {nick}")
            node, target = holder
            event = ChatEvent(
                kind, "", member.nick, text, target, time=self.clock.seconds()
            )
            d = self.store.sendPrivate(node, encode_events([event]))
            return d.addCallback(delivered, event)

        def delivered(receivers: int, event: ChatEvent) -> ChatEvent:
            if not receivers:
                raise ChatError(f"no such nickname: {nick}")
            return event

        return self.store.holder(nick).addCallback(send)

    # --- rooms ------------------------------------------------------------

    def room(self, name: str) -> "Deferred[IChatRoom]":
        if not self.up or name in self._rooms:
            try:
                return succeed(self.getRoom(name))
            except ChatError:
                return fail()
        d = self.store.addRoom(name, self.maxRooms)

        def checked(count: int) -> IChatRoom:
            if count:
                raise ChatError(f"too many rooms ({count}): join one of /rooms")
            return self.getRoom(name)

        return d.addCallback(checked)

    def getRoom(self, name: str) -> SharedRoom:
        """
        L{room}, at once, without asking Redis.

        @raise ChatError: when it would be one room too many here.
        """
        self.local.getRoom(name)  # made by _newRoom, if need be
        return self._rooms[name]

    def _newRoom(self, name: str) -> ChatRoom:
        room = self._rooms[name] = SharedRoom(name, self)
        channel = self.store.roomChannel(name)
        self._roomsByChannel[channel] = room
        d = self.link.subscribe(channel)
        d.addCallback(lambda _: room.sync() if self.link.up else None)
        d.addErrback(self.logFailure, f"subscribing to #{name}")
        return room.local

    def roomEmptied(self, room: SharedRoom) -> None:
        """
        Called by C{room} when its last member here left: forget it here.
        """
        if room.name == self.defaultRoom or self._rooms.get(room.name) is not room:
            return
        del self._rooms[room.name]
        self.local.roomEmptied(room.local)
        channel = self.store.roomChannel(room.name)
        self._roomsByChannel.pop(channel, None)
        self.link.unsubscribe(channel)

    def rooms(self) -> "Deferred[List[Tuple[str, int]]]":
        if not self.up:
            return self.local.rooms()
        return self.store.rooms()

    def counts(self) -> Dict[str, float]:
        counts = self.local.counts()
        counts["broker_up"] = 1 if self.up else 0
        counts["broker_lag"] = self.lag
        return counts

    def flush(self) -> None:
        for room in list(self._rooms.values()):
            room.flush()

    @property
    def busy(self) -> bool:
        """
        Whether anything is under way: a command, a room's batch or sync.
        """
        return self.link.busy or any(room.busy for room in self._rooms.values())

    def stop(self) -> "Deferred[Any]":
        """
        Leave the chat network cleanly, once this process's clients are
        gone: stop beating, and remove what is left of its nicknames and
        memberships.
        """
        if self._beat.running:
            self._beat.stop()
        if not self.up:
            return succeed(None)
        d = self.store.leaveNodes()
        d.addCallback(lambda _: self.reap(self.node, "server shutting down"))
        return d.addErrback(self.logFailure, "leaving the chat network")


class _EvictingError(Exception):
    """
    Redis may evict keys: the shared chat does not run on it.
    """


class BrokerService(Service):
    """
    Runs a L{RedisChatServer}'s link to Redis: it starts before the chat
    listens, and stops after every client has left, so that their leaving
    reaches the other processes.
    """

    _timeout: Optional[IDelayedCall] = None

    def __init__(self, server: RedisChatServer) -> None:
        self.server = server

    def whenReady(self) -> "Deferred[None]":
        """
        See L{RedisChatServer.whenReady}.
        """
        return self.server.whenReady()

    def startService(self) -> None:
        super().startService()
        server = self.server
        self._timeout = server.clock.callLater(server.startupWait, server.ready)
        server.whenReady().addCallback(lambda _: self._stopWaiting())
        server.link.startService()

    def _stopWaiting(self) -> None:
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None

    def stopService(self) -> "Deferred[Any]":
        super().stopService()
        self._stopWaiting()
        self.server.ready()
        d = self.server.stop()
        d.addBoth(lambda _: self.server.link.stopService())
        return d
