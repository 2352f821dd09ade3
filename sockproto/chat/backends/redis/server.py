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
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from twisted.application.service import Service
from twisted.internet.defer import Deferred, FirstError, fail, gatherResults, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from ....logs import SafeLogger
from ....server import default_reactor
from ...events import PRIVATE, PRIVATE_NOTICE, ChatEvent, EventBatch
from ...interfaces import ChatError, IChatMember, IChatRoom, IChatServer, NickInUseError
from ...names import nick_key
from ..memory import ChatRoom, ChatServer
from .presence import Presence
from .resp import RedisLink
from .room import SharedRoom
from .store import LOST, MAX_NUMBER, RedisStore
from .wire import MalformedMessageError, decode_events, encode_events

__all__ = ["BrokerService", "RedisChatServer"]

log = SafeLogger()


@implementer(IChatServer)
class RedisChatServer:
    """
    Nicknames and rooms shared with every process using the same Redis
    (and prefix).  While Redis is unreachable, this process goes on as the
    in-process L{ChatServer} it contains, for its own clients, and tells
    them so.

    (Over 300 lines: every operation of L{IChatServer}, each in both
    modes; the link's life — going alone, heartbeats, reaping, coming
    back — is its L{Presence}'s, the Redis side L{RedisStore}'s.)

    @ivar local: the in-process chat inside: this process's members and
        rooms, and the whole chat while Redis is away.
    @ivar up: whether rooms are shared through Redis (see L{switch}).
    @ivar heartbeat: seconds between this process's heartbeats; a process
        silent for two heartbeats is reaped by the others (its members
        leave with the reason "server lost"), so within three.
    """

    historyScan = 4
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
        self._rooms: Dict[str, SharedRoom] = {}
        self._roomsByChannel: Dict[bytes, SharedRoom] = {}
        self._privateChannel = self.store.nodeChannel()
        self._waiting: Optional[List[Deferred[None]]] = []
        self.presence = Presence(self)
        self.store.onRefused = self.presence.refused
        link.channels.add(self._privateChannel)
        link.onUp, link.onDown, link.onMessage = (
            self.presence.linkUp,
            self.presence.linkDown,
            self.message,
        )
        link.onUnreachable = self.ready
        link.onResubscribed = self.presence.resubscribed
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

    def sharedRooms(self) -> List[SharedRoom]:
        """The rooms this process has members in (and the default one)."""
        return list(self._rooms.values())

    def tellAlone(self, member: IChatMember) -> None:
        """See L{Presence.tellAlone}."""
        self.presence.tellAlone(member)

    def renameToGuest(self, member: IChatMember) -> "Deferred[None]":
        """
        C{member}'s nickname is someone else's (taken elsewhere while this
        process could not tell): give it a guest one, and say why.
        """
        old = member.nick
        self.local.forget(member)
        d = self._guest(member)

        def renamed(nick: str) -> None:
            for room in self.sharedRooms():
                room.renamed(member, old, nick)
            changed = getattr(member, "nickChanged", None)
            if changed is not None:
                changed(nick, f"{old} was taken on another server meanwhile")

        return d.addCallback(renamed)

    # --- publishing and receiving -----------------------------------------

    def publish(self, room: SharedRoom, events: Sequence[ChatEvent]) -> None:
        """
        Publish C{events} of C{room}, as one message; if that fails, at
        least this process's members get them.
        """
        if self.presence.stale:
            # Paused past the others' patience: our nicknames may be
            # someone else's now.  Claim them again before publishing.
            room.deliverBatch(EventBatch(tuple(events)))
            log.warn("chat: this process was silent too long; rejoining first")
            self.presence.goAlone()
            self.presence.rejoin()
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
            return self.presence.lost(data[len(LOST) :].decode("utf-8", "replace"))
        try:
            events = decode_events(data)
        except MalformedMessageError as e:
            return self.dropped("the private channel", str(e))
        for event in events:
            private = event.kind in (PRIVATE, PRIVATE_NOTICE)
            target = self.local.find(event.target) if private else None
            if target is not None:
                target.receive(event)

    # --- nicknames --------------------------------------------------------

    def register(self, member: IChatMember) -> "Deferred[str]":
        if not self.up:
            self.presence.takenAlone(member)
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
            self.local.hold(member, nick)
            self.presence.held(member)
            return nick

        return d.addCallback(numbered)

    def rename(self, member: IChatMember, nick: str) -> "Deferred[None]":
        if not self.up:
            renamed = self.local.rename(member, nick)

            def takenAlone(result: None) -> None:
                self.presence.takenAlone(member)

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
            self.local.hold(member, nick)
            self.presence.held(member)
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
        self.presence.forget(member)
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
        counts["broker_lag"] = self.presence.lag
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
        if self.presence.beating.running:
            self.presence.beating.stop()
        if not self.up:
            return succeed(None)
        d = self.store.leaveNodes()
        d.addCallback(lambda _: self.presence.reap(self.node, "server shutting down"))
        return d.addErrback(self.logFailure, "leaving the chat network")


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
