# -*- test-case-name: tests.test_chat_shared -*-
"""
A room shared through Redis, as one process sees it.

It I{contains} an in-process L{ChatRoom}: that one holds the room's
members in this process, fans events out to them, keeps the room's recent
history as this process last saw it, and serves the room alone while
Redis is away.  What comes from the broker (verified against the room's
stream, put in order, backfilled) is its L{RoomStream}'s.

A newcomer is served its history first: live events wait for it until
the history (and the names its front end asks for next) are shown.
"""

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure
from zope.interface import implementer

from ....logs import SafeLogger
from ...events import (
    ACTION,
    JOIN,
    LEAVE,
    MESSAGE,
    NICK,
    NOTICE,
    QUIT,
    ChatEvent,
    EventBatch,
)
from ...interfaces import IChatMember, IChatRoom
from ..memory import ChatRoom
from .store import Entries
from .stream import RoomStream

if TYPE_CHECKING:  # pragma: no cover
    from .server import RedisChatServer

__all__ = ["SharedRoom"]

log = SafeLogger()

SAID = (MESSAGE, ACTION)


@implementer(IChatRoom)
class SharedRoom:
    """
    A room shared through Redis: its members here, and the broker's
    numbered events, delivered in order.

    (Just over 300 lines: each of the room's operations in both modes,
    and a newcomer's arrival, history first; what comes from the broker
    is L{RoomStream}'s, the Redis side L{RedisStore}'s, the members the
    local room's.)

    @ivar local: the in-process room inside: members, fan-out, history,
        and the whole room while L{alone}.
    @ivar alone: whether Redis is away, so that L{local} serves the room
        by itself; set by the server (L{RedisChatServer.switch}) only.
    @ivar feed: the order of the broker's numbered messages.
    """

    def __init__(self, name: str, server: "RedisChatServer") -> None:
        self.name = name
        self.server = server
        self.store = server.store
        self.clock = server.clock
        self.stats = server.stats
        self.local = ChatRoom(
            name,
            server.clock,
            server.historySize,
            server.quietAbove,
            lambda _: server.roomEmptied(self),
            server.stats,
        )
        self.alone = not server.up
        self._pending: List[ChatEvent] = []
        self._flushCall: Optional[IDelayedCall] = None
        self._arriving: Dict[int, IChatMember] = {}
        self._catchingUp: Dict[int, Tuple[IChatMember, List[EventBatch]]] = {}
        self._releasing: List[IChatMember] = []
        self._releaseCall: Optional[IDelayedCall] = None
        self.stream = RoomStream(self)
        self.feed = self.stream.feed

    @property
    def members(self) -> Dict[int, IChatMember]:
        """This process's members of the room (the local room's)."""
        return self.local.members

    @property
    def history(self) -> Sequence[ChatEvent]:
        """The room's recent lines, as this process last saw them."""
        return self.local.history

    @property
    def synced(self) -> "Deferred[None]":
        """Fires once the room has first synced (the stream's)."""
        return self.stream.synced

    @property
    def lastSeq(self) -> int:
        """The number of the last message delivered here (the feed's)."""
        return self.feed.lastSeq

    @property
    def syncing(self) -> bool:
        """Whether the room waits for the stream to say where it is."""
        return self.feed.syncing

    @property
    def pending(self) -> bool:
        """Whether events wait to be published or delivered."""
        return bool(
            self._pending
            or self.stream.pending
            or self.local.pending
            or self._catchingUp
        )

    @property
    def busy(self) -> bool:
        """Whether anything of the room is under way (for tests' turns)."""
        return self.pending or self.syncing

    def goAlone(self) -> None:
        """
        Redis went away: the local room serves the room, starting with what
        this turn had yet to publish; what arrives once Redis is back waits
        for L{sync}.
        """
        if self._flushCall is not None and self._flushCall.active():
            self._flushCall.cancel()
        self._flushCall = None
        unpublished, self._pending = self._pending, []
        if unpublished:
            self.deliverBatch(EventBatch(tuple(unpublished)))
        self._release(list(m for m, _ in self._catchingUp.values()))
        self.alone = True
        self.feed.startSync()

    def goShared(self) -> None:
        """
        Redis is back and the room synced: serve it through Redis again.
        """
        self.local.flush()
        self.alone = False

    # --- joining and leaving ---------------------------------------------

    def join(self, member: IChatMember) -> "Deferred[List[ChatEvent]]":
        self.stream.deliverIncoming()  # what came before the member's history
        if self.alone:
            self.server.tellAlone(member)
            return self.local.join(member)
        # Once the room's channel is subscribed and synced, everything
        # published from then on reaches this process: only then does the
        # member arrive, and its history end where live delivery starts.
        self._arriving[id(member)] = member
        return self._whenSynced().addCallback(lambda _: self._arrive(member))

    def _whenSynced(self) -> "Deferred[None]":
        if self.synced.called:
            return succeed(None)
        d: Deferred[None] = Deferred()

        def fire(result: object) -> object:
            d.callback(None)
            return result

        self.synced.addBoth(fire)
        return d

    def _arrive(self, member: IChatMember) -> "Deferred[List[ChatEvent]]":
        if self._arriving.pop(id(member), None) is None:
            return succeed([])  # it left meanwhile
        if self.alone:
            return self.local.join(member)
        self.flush()
        self.stream.deliverIncoming()
        self._catchingUp[id(member)] = (member, [])
        self._announce(
            ChatEvent(JOIN, self.name, member.nick, time=self.clock.seconds())
        )
        seen = self.lastSeq
        d: Deferred[Any] = self.store.join(self.name, member.nick)
        d.addCallback(lambda _: self._history(seen))
        d.addErrback(self._noHistory)
        return d.addCallback(self._historyRead, member)

    def _historyRead(
        self, history: List[ChatEvent], member: IChatMember
    ) -> List[ChatEvent]:
        """
        C{member}'s history is about to be shown: it goes live once that
        is done — after the names its front end asks for next (L{nicks}),
        or at the end of this turn.
        """
        if id(member) in self._catchingUp:
            self._releasing.append(member)
            if self._releaseCall is None:
                self._releaseCall = self.clock.callLater(0, self._releaseWaiting)
        return history

    def _releaseWaiting(self) -> None:
        self._releaseCall = None
        releasing, self._releasing = self._releasing, []
        self._release(releasing)

    def _release(self, members: Sequence[IChatMember]) -> None:
        """
        C{members}' history is shown: make them live, with what was
        delivered to the room meanwhile.
        """
        for member in members:
            entry = self._catchingUp.pop(id(member), None)
            if entry is None:
                continue  # it left meanwhile
            self.members[id(member)] = member
            for batch in entry[1]:
                try:
                    member.deliver(batch)
                except Exception:
                    log.failure("chat: delivery to {nick} failed", nick=member.nick)
                    self.remove(member, "delivery failed")
                    break

    def _noHistory(self, failure: Failure) -> List[ChatEvent]:
        self.server.logFailure(failure, f"reading #{self.name}'s history")
        return list(self.local.history)

    def _history(self, end: int) -> "Deferred[List[ChatEvent]]":
        historySize = self.server.historySize
        if not historySize or not end:
            return succeed([])
        count = historySize * self.server.historyScan + 20
        d = self.store.recent(self.name, end, count)

        def lines(entries: Entries) -> List[ChatEvent]:
            events = [e for _, es in self.stream.decode(entries) for e in es]
            return [e for e in events if e.kind in SAID][-historySize:]

        return d.addCallback(lines)

    def leave(self, member: IChatMember, reason: str) -> "Deferred[None]":
        self.remove(member, reason)
        return succeed(None)

    def quit(self, member: IChatMember, reason: str) -> "Deferred[None]":
        self.remove(member, reason, QUIT)
        return succeed(None)

    def remove(self, member: IChatMember, reason: str, kind: str = LEAVE) -> None:
        """
        L{leave} (or, with C{kind} L{QUIT}, L{quit}), at once (as far as
        this process is concerned).
        """
        arriving = self._arriving.pop(id(member), None) is not None
        catchingUp = self._catchingUp.pop(id(member), None) is not None
        if self.alone:
            if arriving and not (self.members or self._arriving):
                self.server.roomEmptied(self)
            return self.local.remove(member, reason, kind)
        self.flush()
        present = self.members.pop(id(member), None) is not None or catchingUp
        if not present and not arriving:
            return
        keepEmpty = self.name == self.server.defaultRoom
        d = self.store.leave(self.name, member.nick, keepEmpty)
        if not arriving:  # else its arrival was never announced
            d.addCallback(self._left, member.nick, reason, kind)
        d.addErrback(self.server.logFailure, "leaving #" + self.name)
        if not (self.members or self._arriving or self._catchingUp):
            self.server.roomEmptied(self)

    def _left(self, remaining: int, nick: str, reason: str, kind: str) -> None:
        if remaining:
            self.server.publish(
                self,
                [ChatEvent(kind, self.name, nick, reason, time=self.clock.seconds())],
            )

    def nicks(self) -> "Deferred[List[str]]":
        if self.alone:
            return self.local.nicks()
        d = self.store.members(self.name)
        releasing, self._releasing = self._releasing, []
        if releasing:  # a newcomer's front end shows them: live after that

            def release(result: object) -> object:
                self.clock.callLater(0, self._release, releasing)
                return result

            d.addBoth(release)
        return d

    def memberNicks(self) -> List[str]:
        """This process's members' nicknames."""
        return self.local.memberNicks()

    # --- events -----------------------------------------------------------

    def say(self, member: IChatMember, text: str) -> "Deferred[None]":
        if self.alone:
            return self.local.say(member, text)
        return self._said(
            ChatEvent(MESSAGE, self.name, member.nick, text, time=self.clock.seconds())
        )

    def act(self, member: IChatMember, text: str) -> "Deferred[None]":
        if self.alone:
            return self.local.act(member, text)
        return self._said(
            ChatEvent(ACTION, self.name, member.nick, text, time=self.clock.seconds())
        )

    def notice(self, member: IChatMember, text: str) -> "Deferred[None]":
        if self.alone:
            return self.local.notice(member, text)
        return self._said(
            ChatEvent(NOTICE, self.name, member.nick, text, time=self.clock.seconds())
        )

    def _said(self, event: ChatEvent) -> "Deferred[None]":
        self.stats.lines += 1
        self._publish(event)
        return succeed(None)

    def renamed(self, member: IChatMember, old: str, new: str) -> None:
        """
        Announce that C{member}, formerly C{old}, is now C{new}.
        """
        if self.alone:
            return self.local.renamed(member, old, new)
        if id(member) in self.members or id(member) in self._catchingUp:
            self._announce(
                ChatEvent(NICK, self.name, old, new, time=self.clock.seconds())
            )

    def _announce(self, event: ChatEvent) -> None:
        if len(self.members) <= self.local.quietAbove:
            self._publish(event)

    def _publish(self, event: ChatEvent) -> None:
        self._pending.append(event)
        if self._flushCall is None:
            self._flushCall = self.clock.callLater(0, self.flush)

    def flush(self) -> None:
        """
        Publish the events of this reactor turn, as one message (or, while
        alone, deliver them here).
        """
        if self._flushCall is not None:
            if self._flushCall.active():
                self._flushCall.cancel()
            self._flushCall = None
        if self.alone:
            self.stream.deliverIncoming()
            self.local.flush()
            return
        if self._pending:
            events, self._pending = self._pending, []
            self.server.publish(self, events)

    def received(self, seq: int, data: bytes) -> None:
        """Called with each numbered message of the room's channel."""
        self.stream.received(seq, data)

    def sync(self) -> "Deferred[None]":
        """See L{RoomStream.sync}."""
        return self.stream.sync()

    def deliverUnconfirmed(self, events: Sequence[ChatEvent]) -> None:
        """See L{RoomStream.deliverUnconfirmed}."""
        self.stream.deliverUnconfirmed(events)

    def deliverBatch(self, batch: EventBatch) -> None:
        """
        Deliver C{batch} to this process's members, and remember its lines
        as the room's history (what the local room serves if Redis goes
        away).
        """
        history = self.local.history
        history.extend(e for e in batch.events if e.kind in SAID)
        for _, waiting in self._catchingUp.values():
            waiting.append(batch)
        for member in self.local.fanOut(batch):
            self.remove(member, "delivery failed")
