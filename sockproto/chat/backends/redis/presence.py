# -*- test-case-name: tests.test_chat_redis_faults -*-
"""
This process's standing in the chat network: the life of its link to
Redis, as one story.

L{Presence} switches its L{RedisChatServer} between sharing rooms and
serving its clients alone (when Redis is away, stalled, refusing writes,
or may evict keys), tells those clients once each way, beats, reaps the
processes that stopped beating, and comes back through one path,
L{Presence.rejoin}: the eviction policy is checked, then this process
beats, claims its nicknames again (those held from before the outage
first; one taken during it gives way to an earlier holder), rejoins its
rooms, and syncs them.
"""

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set, Tuple

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from ....logs import SafeLogger
from ...events import JOIN, QUIT, ChatEvent
from ...interfaces import ChatError, IChatMember
from ...names import nick_key
from .resp import RedisError
from .room import SharedRoom
from .stream import REJOINED, SERVER_LOST
from .wire import encode_events

if TYPE_CHECKING:  # pragma: no cover
    from .server import RedisChatServer

__all__ = ["BACK", "Presence", "UNAVAILABLE"]

log = SafeLogger()

UNAVAILABLE = "chat network unavailable: only people on this server see your lines"
BACK = "chat network back: everyone in your room sees your lines again"


class _EvictingError(Exception):
    """
    Redis may evict keys: the shared chat does not run on it.
    """


class Presence:
    """
    The link's life for one L{RedisChatServer}: see the module.

    @ivar beating: the heartbeat loop, every C{server.heartbeat} seconds.
    @ivar lag: seconds the last heartbeat took to Redis and back.
    """

    def __init__(self, server: "RedisChatServer") -> None:
        self.server = server
        self.store = server.store
        self.link = server.link
        self.clock = server.clock
        self.lag = 0.0
        self.beating = LoopingCall(self.beatIfUp)
        self.beating.clock = self.clock
        self._wasUp = False
        self._toldAlone: Set[int] = set()
        self._since: Dict[int, float] = {}
        self._takenAlone: Set[int] = set()
        self._lastBeat = -1.0
        self._rejoining = False
        self._refusal: Optional[str] = None

    # --- nicknames: when each was taken, and whether Redis was away ---------

    def held(self, member: IChatMember) -> None:
        """C{member} took its nickname now, through Redis."""
        self._since[id(member)] = self.clock.seconds()
        self._takenAlone.discard(id(member))

    def takenAlone(self, member: IChatMember) -> None:
        """C{member} took its nickname now, while Redis was away."""
        self._since[id(member)] = self.clock.seconds()
        self._takenAlone.add(id(member))

    def forget(self, member: IChatMember) -> None:
        """C{member} left the chat."""
        self._toldAlone.discard(id(member))
        self._since.pop(id(member), None)
        self._takenAlone.discard(id(member))

    # --- the link -------------------------------------------------------------

    def linkUp(self) -> None:
        """
        Redis is reachable: claim our nicknames and rooms again, fill what
        was missed, and start beating.
        """
        self.rejoin().addCallback(lambda _: self.server.ready())
        if not self.beating.running:
            self.beating.start(self.server.heartbeat, now=False)

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
            if self.server.up:
                self.goAlone()
            return
        if failure.check(ConnectionLost) or not self.link.up:
            return  # the link says so, once
        if not failure.check(ChatError):
            self.server.logFailure(failure, "rejoining the chat network")

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
        if self.server.up:
            self.goAlone()

    def goAlone(self) -> None:
        """
        Serve this process's clients alone, and tell them.
        """
        self.server.switch(False)
        self.tellAll(UNAVAILABLE)

    def resubscribed(self) -> None:
        """
        The link heard nothing for a while (its subscriber connection was
        lost and is back): every room reads what it missed from its stream.
        """
        for room in self.server.sharedRooms():
            room.sync()

    def linkDown(self) -> None:
        """
        Redis is gone: rooms go on in this process; tell their members.
        """
        if not self.server.up:
            return
        self.goAlone()

    def tellAll(self, text: str) -> None:
        for member in self.server.local.members():
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
        members = self.server.local.members()
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
            self.server.switch(True)
            if self._wasUp:
                self.tellAll(BACK)
            self._toldAlone = set()
            if not self._wasUp:
                log.info(
                    "chat: sharing rooms through Redis as {node}", node=self.server.node
                )
            self._wasUp = True

        return d.addCallback(back)

    def _reclaimNick(self, member: IChatMember) -> "Deferred[None]":
        alone = id(member) in self._takenAlone
        since = self._since.get(id(member), 0.0)
        d = self.store.claim(member.nick, since, alone=alone, again=not alone)

        def claimed(holder: Optional[str]) -> Optional["Deferred[None]"]:
            if holder is None:
                return None
            return self.server.renameToGuest(member)

        return d.addCallback(claimed)

    def _rejoinRooms(self) -> "Deferred[Any]":
        steps: List[Deferred[Any]] = []
        for room in self.server.sharedRooms():
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
            self.server.publish(room, [event])

    def beatIfUp(self) -> None:
        if not self.link.up:
            return
        self.link.ping().addErrback(lambda _: None)  # a stalled subscriber, too
        if not self.server.up:
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
        d = self.store.heartbeat(self.server.heartbeat * 2)
        sent = self.clock.seconds()

        def beaten(reply: Tuple[bool, List[str]]) -> Optional["Deferred[Any]"]:
            self.lag = self.clock.seconds() - sent
            self._lastBeat = self.clock.seconds()
            new, deadNodes = reply
            for node in deadNodes:
                self.reap(node)
            if new and self.server.up and not rejoining:  # we were reaped ourselves
                log.warn("chat: another process took this one for dead; rejoining")
                self.goAlone()
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
        if self._lastBeat < 0 or not self.beating.running:
            return False
        late = self.clock.seconds() - self._lastBeat
        return late > max(
            1.8 * self.server.heartbeat, self.server.heartbeat + self.link.timeout
        )

    def reap(self, node: str, reason: str = SERVER_LOST) -> "Deferred[None]":
        """
        Take process C{node}'s members out of every room, with C{reason},
        and free their nicknames.
        """
        if node != self.server.node:
            log.warn(
                "chat: process {node} stopped beating: its members leave", node=node
            )
        d: Deferred[Any] = self.store.reap(node, self.server.defaultRoom)

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
                d.addErrback(self.server.logFailure, f"announcing {node}'s loss")

        d.addCallback(announce)
        return d.addErrback(self.server.logFailure, f"reaping {node}")

    def lost(self, key: str) -> None:
        """
        Another process says it claimed, as an earlier holder, a nickname
        of ours taken while Redis was away: check, then rename ours.
        """
        mine = [m for m in self.server.local.members() if nick_key(m.nick) == key]
        if not mine:
            return
        member = mine[0]
        d = self.store.holder(member.nick)

        def checked(holder: Optional[Tuple[str, str]]) -> Any:
            if holder is not None and holder[0] != self.server.node:
                return self.server.renameToGuest(member)
            return None

        d.addCallback(checked)
        d.addErrback(self.server.logFailure, "checking a nickname")
