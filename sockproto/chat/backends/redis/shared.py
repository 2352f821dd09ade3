# -*- test-case-name: tests.test_chat_shared -*-
"""
A chat shared by many processes, on many machines, through Redis.

What goes over Redis: nickname claims (one key per look-alike key, taken
atomically), each room's members (a sorted set, in joining order), the
list of rooms, each room's events (one message per room per reactor turn,
numbered by the broker, kept in a capped stream for history and backfill,
and published on the room's channel), private messages (on the
recipient's process's channel), and each process's heartbeat.  What stays
in the process: its connections, the fan-out to them, and, while Redis is
away, the rooms as this process alone sees them.

Every process delivers a room's events, its own clients' lines included,
in the order of the broker's numbers: all members see one order.  A gap in
the numbers (a message lost while reconnecting) is filled from the stream
before anything later is delivered.
"""

import os
import socket
import uuid
from typing import Any, Dict, List, Optional, Sequence, Tuple

from twisted.application.service import Service
from twisted.internet.defer import (
    Deferred,
    FirstError,
    fail,
    gatherResults,
    succeed,
)
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from zope.interface import implementer

from ....logs import SafeLogger
from ...events import ACTION, JOIN, LEAVE, MESSAGE, PRIVATE, ChatEvent, EventBatch
from ...interfaces import (
    ChatError,
    IChatMember,
    IChatRoom,
    IChatServer,
    InvalidNickError,
    NickInUseError,
)
from ...names import NICK_RULE, nick_key, valid_nick
from ..memory import ChatRoom, ChatServer
from .feed import Action, Backfill, Deliver, Forged, Gap, RoomFeed
from .resp import RedisLink
from .wire import MalformedMessageError, decode_events, encode_events

__all__ = ["BrokerService", "RedisChatServer", "SharedRoom"]

log = SafeLogger()

UNAVAILABLE = "chat network unavailable: only people on this server see your lines"
BACK = "chat network back: everyone in your room sees your lines again"
SERVER_LOST = "server lost"

# KEYS: seq, stream, channel.  ARGV: stream length, message.
_PUBLISH = """
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '0-' .. seq, 'm', ARGV[2])
redis.call('PUBLISH', KEYS[3], seq .. ' ' .. ARGV[2])
return seq
"""

# KEYS: rooms. ARGV: room, maxRooms.  Returns 0, or the number of rooms.
_ROOM = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 0 end
local count = redis.call('SCARD', KEYS[1])
local max = tonumber(ARGV[2])
if max > 0 and count >= max then return count end
redis.call('SADD', KEYS[1], ARGV[1])
return 0
"""

# KEYS: members, rooms, node rooms, order.  ARGV: nick, room.
_JOIN = """
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[2] .. ' ' .. ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[4]), ARGV[1])
return 1
"""

# KEYS: members, rooms, node rooms, stream.  ARGV: nick, room, is default.
_LEAVE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[2] .. ' ' .. ARGV[1])
local left = redis.call('ZCARD', KEYS[1])
if left == 0 and ARGV[3] == '0' then
  redis.call('SREM', KEYS[2], ARGV[2])
  redis.call('DEL', KEYS[4])
end
return left
"""

# KEYS: claim, node nicks.  ARGV: node, nick, key.  Returns the holder, or
# nil once claimed.
_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder and string.sub(holder, 1, #ARGV[1] + 1) ~= ARGV[1] .. ' ' then
  return holder
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return false
"""

# KEYS: claim, node nicks.  ARGV: node, key.
_UNCLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder and string.sub(holder, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
  redis.call('DEL', KEYS[1])
end
redis.call('SREM', KEYS[2], ARGV[2])
return 1
"""

# KEYS: node rooms.  ARGV: prefix, old nick, new nick, rooms...
_RENAME_MEMBER = """
for i = 4, #ARGV do
  local members = ARGV[1] .. 'room:' .. ARGV[i] .. ':members'
  local score = redis.call('ZSCORE', members, ARGV[2])
  if score then
    redis.call('ZREM', members, ARGV[2])
    redis.call('ZADD', members, score, ARGV[3])
  end
  redis.call('SREM', KEYS[1], ARGV[i] .. ' ' .. ARGV[2])
  redis.call('SADD', KEYS[1], ARGV[i] .. ' ' .. ARGV[3])
end
return 1
"""

# KEYS: nodes.  ARGV: node, dead after (ms).  Returns {newly added, dead}.
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local new = redis.call('ZADD', KEYS[1], now, ARGV[1])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
for _, node in ipairs(dead) do redis.call('ZREM', KEYS[1], node) end
return {new, dead}
"""

# KEYS: dead node's nicks, its rooms.  ARGV: prefix, node, default room.
# Returns {room, nick, members left, ...}.
_REAP = """
local gone = {}
for _, entry in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local space = string.find(entry, ' ', 1, true)
  local room = string.sub(entry, 1, space - 1)
  local nick = string.sub(entry, space + 1)
  local members = ARGV[1] .. 'room:' .. room .. ':members'
  if redis.call('ZREM', members, nick) == 1 then
    local left = redis.call('ZCARD', members)
    if left == 0 and room ~= ARGV[3] then
      redis.call('SREM', ARGV[1] .. 'rooms', room)
      redis.call('DEL', ARGV[1] .. 'room:' .. room .. ':log')
    end
    table.insert(gone, room)
    table.insert(gone, nick)
    table.insert(gone, left)
  end
end
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local claim = ARGV[1] .. 'nick:' .. key
  local holder = redis.call('GET', claim)
  if holder and string.sub(holder, 1, #ARGV[2] + 1) == ARGV[2] .. ' ' then
    redis.call('DEL', claim)
  end
end
redis.call('DEL', KEYS[1], KEYS[2])
return gone
"""

# KEYS: rooms.  ARGV: prefix.  Returns {room, count, ...}.
_ROOMS = """
local out = {}
for _, room in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  table.insert(out, room)
  table.insert(out, redis.call('ZCARD', ARGV[1] .. 'room:' .. room .. ':members'))
end
return out
"""


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@implementer(IChatRoom)
class SharedRoom(ChatRoom):
    """
    A room shared through Redis, as this process sees it: its members here,
    and the broker's numbered events, delivered in order.

    @ivar lastSeq: the number of the last event delivered here.
    """

    def __init__(self, name: str, server: "RedisChatServer") -> None:
        super().__init__(
            name,
            server.clock,
            server.historySize,
            server.quietAbove,
            server.roomEmptied,
            server.stats,
        )
        self.server = server
        self.feed: RoomFeed[List[ChatEvent]] = RoomFeed()
        self._incoming: List[ChatEvent] = []
        self._incomingCall: Optional[IDelayedCall] = None
        self._arriving: Dict[int, IChatMember] = {}
        self.synced: Deferred[None] = Deferred()

    def key(self, suffix: str) -> str:
        return self.server.key(f"room:{self.name}:{suffix}")

    @property
    def lastSeq(self) -> int:
        """The number of the last message delivered here (the feed's)."""
        return self.feed.lastSeq

    @property
    def syncing(self) -> bool:
        """Whether the room waits for the stream to say where it is."""
        return self.feed.syncing

    def unsynced(self) -> None:
        """
        Redis went away: what arrives once it is back waits for L{sync}.
        """
        self.feed.startSync()

    # --- joining and leaving ---------------------------------------------

    def join(self, member: IChatMember) -> "Deferred[List[ChatEvent]]":
        self.deliverIncoming()  # what came before the member's history
        if not self.server.up:
            return super().join(member)
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
        if not self.server.up:
            return ChatRoom.join(self, member)
        self.flush()
        self.deliverIncoming()
        self.members[id(member)] = member
        self._announce(ChatEvent(JOIN, self.name, member.nick))
        seen = self.lastSeq
        args = (*self.joinKeys(), member.nick, self.name)
        d = self.server.execute("EVAL", _JOIN, *args)
        d.addCallback(lambda _: self._history(seen))
        d.addErrback(self._noHistory)
        return d

    def joinKeys(self) -> Tuple[Any, ...]:
        server = self.server
        keys = (self.key("members"), server.key("rooms"))
        return (4, *keys, server.nodeKey("rooms"), server.key("order"))

    def _noHistory(self, failure: Failure) -> List[ChatEvent]:
        log.failure("chat: reading #{room}'s history", failure, room=self.name)
        return []

    def _history(self, end: int) -> "Deferred[List[ChatEvent]]":
        historySize = self.server.historySize
        if not historySize or not end:
            return succeed([])
        count = historySize * self.server.historyScan + 20
        key = self.key("log")
        d = self.server.execute("XREVRANGE", key, f"0-{end}", "-", "COUNT", count)

        def lines(entries: List[Any]) -> List[ChatEvent]:
            events = [e for _, es in reversed(self._decodeEntries(entries)) for e in es]
            said = [e for e in events if e.kind in (MESSAGE, ACTION)]
            return said[-historySize:]

        return d.addCallback(lines)

    def remove(self, member: IChatMember, reason: str) -> None:
        arriving = self._arriving.pop(id(member), None) is not None
        if not self.server.up:
            return super().remove(member, reason)
        self.flush()
        if self.members.pop(id(member), None) is None and not arriving:
            return
        default = "1" if self.name == self.server.defaultRoom else "0"
        server = self.server
        keys = [self.key("members"), server.key("rooms"), server.nodeKey("rooms")]
        keys.append(self.key("log"))
        d = self.server.execute(
            "EVAL", _LEAVE, 4, *keys, member.nick, self.name, default
        )
        if not arriving:  # else its arrival was never announced
            d.addCallback(self._left, member.nick, reason)
        d.addErrback(self.server.logFailure, "leaving #" + self.name)
        if not (self.members or self._arriving) and self.emptied is not None:
            self.emptied(self)

    def _left(self, remaining: int, nick: str, reason: str) -> None:
        if remaining:
            self.server.publish(self, [ChatEvent(LEAVE, self.name, nick, reason)])

    def nicks(self) -> "Deferred[List[str]]":
        if not self.server.up:
            return super().nicks()
        d = self.server.execute("ZRANGE", self.key("members"), 0, -1)
        return d.addCallback(lambda names: [_text(n) for n in names])

    # --- events -----------------------------------------------------------

    def flush(self) -> None:
        if not self.server.up:
            self.deliverIncoming()
            return super().flush()
        if self._flushCall is not None:
            if self._flushCall.active():
                self._flushCall.cancel()
            self._flushCall = None
        if self._pending:
            events, self._pending = self._pending, []
            self.server.publish(self, events)

    def received(self, seq: int, data: bytes) -> None:
        """
        Called with each numbered message of the room's channel.
        """
        try:
            events = decode_events(data)
        except MalformedMessageError as e:
            return self.server.dropped(self.name, str(e))
        self.perform(self.feed.received(seq, events))

    def perform(self, actions: Sequence[Action]) -> None:
        """
        Do what the feed says: deliver, read the stream, log.
        """
        for action in actions:
            if isinstance(action, Deliver):
                self._deliverNumbered(action.payload)
            elif isinstance(action, Backfill):
                self.backfill(action)
            elif isinstance(action, Gap):
                log.warn(
                    "chat: #{room} events {first} to {last} are no longer"
                    " in Redis; going on from {seq}",
                    room=self.name,
                    first=action.first,
                    last=action.last,
                    seq=action.last + 1,
                )
            elif isinstance(action, Forged):
                self.server.dropped(
                    self.name, f"number {action.seq} past {action.current}"
                )

    def _deliverNumbered(self, events: List[ChatEvent]) -> None:
        """
        Deliver C{events} at the end of this reactor turn, with any others
        received in it: one write per member.
        """
        if events:
            self._incoming.extend(events)
            if self._incomingCall is None:
                self._incomingCall = self.clock.callLater(0, self.deliverIncoming)

    def deliverIncoming(self) -> None:
        """
        Deliver what was received from the broker, at once.
        """
        if self._incomingCall is not None:
            if self._incomingCall.active():
                self._incomingCall.cancel()
            self._incomingCall = None
        events, self._incoming = self._incoming, []
        if events:
            self.deliverBatch(EventBatch(tuple(events)))

    def backfill(self, request: Backfill) -> "Deferred[Any]":
        """
        Read the stream as C{request} says, with the room's number, and give
        both to the feed.
        """
        end = "+" if request.last is None else f"0-{request.last}"
        execute = self.server.execute
        d = gatherResults(
            [
                execute("XRANGE", self.key("log"), f"0-{request.first}", end),
                execute("GET", self.key("seq")),
            ],
            consumeErrors=True,
        )

        def read(replies: List[Any]) -> None:
            entries, current = replies
            decoded = self._decodeEntries(entries)
            self.perform(self.feed.backfilled(decoded, _int(current) or 0))

        def failed(failure: Failure) -> None:
            self.server.logFailure(failure, f"backfilling #{self.name}")
            self.perform(self.feed.failed())

        return d.addCallbacks(read, failed)

    def _decodeEntries(self, entries: List[Any]) -> List[Tuple[int, List[ChatEvent]]]:
        decoded = []
        for entry_id, fields in entries:
            seq = int(_text(entry_id).partition("-")[2])
            data = fields[1] if len(fields) >= 2 else b""
            try:
                decoded.append((seq, decode_events(data)))
            except MalformedMessageError as e:
                self.server.dropped(self.name, str(e))
                decoded.append((seq, []))
        return decoded

    def sync(self) -> "Deferred[None]":
        """
        Start from the room's current number, once subscribed; then deliver
        what arrived meanwhile.  After a reconnection, backfill what was
        published while away (or start again from the broker's number if
        Redis lost its data).
        """
        self.feed.startSync()
        d = self.server.execute("GET", self.key("seq"))

        def start(value: Optional[bytes]) -> Optional["Deferred[Any]"]:
            actions = self.feed.synced(_int(value) or 0)
            backfills = [a for a in actions if isinstance(a, Backfill)]
            self.perform([a for a in actions if not isinstance(a, Backfill)])
            return self.backfill(backfills[0]) if backfills else None

        def failed(failure: Failure) -> None:
            self.server.logFailure(failure, f"joining #{self.name}")
            self.perform(self.feed.failed())

        d.addCallbacks(start, failed)
        d.addBoth(lambda _: self._synced())
        return d

    def _synced(self) -> None:
        synced, self.synced = self.synced, succeed(None)
        if not synced.called:
            synced.callback(None)


def _int(value: Any) -> Optional[int]:
    """
    A number Redis answered (bytes), or None.
    """
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@implementer(IChatServer)
class RedisChatServer(ChatServer):
    """
    Nicknames and rooms shared with every process using the same Redis
    (and prefix).  While Redis is unreachable, this process goes on as an
    in-process L{ChatServer} for its own clients, and tells them so.

    (Over 300 lines: it still holds the store, its key names and Lua
    scripts, and subclasses the in-process server for when Redis is away;
    both are the next steps of the restructuring, docs/architecture.md.)

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
        super().__init__(name, clock, historySize, defaultRoom, quietAbove, maxRooms)
        self.link = link
        self.prefix = prefix
        self.heartbeat = heartbeat
        self.streamLength = streamLength
        self.node = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.up = False
        self._wasUp = False
        self._beat = LoopingCall(self._beatIfUp)
        self._beat.clock = self.clock
        self._roomsByChannel: Dict[bytes, SharedRoom] = {}
        self._privateChannel = self.key(f"node:{self.node}").encode()
        self._waiting: Optional[List[Deferred[None]]] = []
        link.channels.add(self._privateChannel)
        link.onUp, link.onDown, link.onMessage = (
            self.linkUp,
            self.linkDown,
            self.message,
        )
        link.onUnreachable = self.ready
        self.service = BrokerService(self)

    def key(self, name: str) -> str:
        return self.prefix + name

    def nodeKey(self, what: str, node: Optional[str] = None) -> str:
        return self.key(f"node:{node or self.node}:{what}")

    def execute(self, *args: Any) -> "Deferred[Any]":
        """
        Run a Redis command; if Redis is lost meanwhile, fail with a
        L{ChatError} that tells the user to try again.
        """
        return self.link.execute(*args).addErrback(self._unavailable)

    @staticmethod
    def _unavailable(failure: Failure) -> Failure:
        if failure.check(ConnectionLost):
            raise ChatError("the chat network is unavailable: try again")
        return failure

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
        d = self.beat()
        d.addCallback(lambda _: self.reclaim())
        d.addErrback(self.logFailure, "rejoining the chat network")
        d.addCallback(lambda _: self.ready())
        if not self._beat.running:
            self._beat.start(self.heartbeat, now=False)

    def linkDown(self) -> None:
        """
        Redis is gone: rooms go on in this process; tell their members.
        """
        if not self.up:
            return
        self.up = False
        for room in self._rooms.values():
            assert isinstance(room, SharedRoom)
            room.unsynced()  # until synced again
        self._tellAll(UNAVAILABLE)

    def _tellAll(self, text: str) -> None:
        for member in list(self._members.values()):
            notice = getattr(member, "notice", None)
            if notice is not None:
                notice(text)

    def reclaim(self) -> "Deferred[None]":
        """
        Claim every local nickname and membership again (a claim taken
        meanwhile by another process renames ours to a guest), then sync
        every local room.
        """
        claims = [self._reclaimNick(m) for m in list(self._members.values())]
        d = gatherResults(claims, consumeErrors=True)
        d.addCallback(lambda _: self._rejoinRooms())

        def back(_: Any) -> None:
            self.up = True
            if self._wasUp and self._members:
                self._tellAll(BACK)
            if not self._wasUp:
                log.info("chat: sharing rooms through Redis as {node}", node=self.node)
            self._wasUp = True

        return d.addCallback(back)

    def _reclaimNick(self, member: IChatMember) -> "Deferred[None]":
        d = self._claim(member.nick)

        def claimed(holder: Optional[bytes]) -> Optional["Deferred[None]"]:
            if holder is None:
                return None
            return self._renameToGuest(member)

        return d.addCallback(claimed)

    def _renameToGuest(self, member: IChatMember) -> "Deferred[None]":
        old = member.nick
        self._forget(member)
        d = self._guest(member)

        def renamed(nick: str) -> None:
            for room in self._rooms.values():
                room.renamed(member, old, nick)
            changed = getattr(member, "nickChanged", None)
            if changed is not None:
                changed(nick, f"{old} was taken on another server meanwhile")

        return d.addCallback(renamed)

    def _rejoinRooms(self) -> "Deferred[Any]":
        steps = []
        for room in list(self._rooms.values()):
            assert isinstance(room, SharedRoom)
            for member in list(room.members.values()):
                args = (*room.joinKeys(), member.nick, room.name)
                d = self.execute("EVAL", _JOIN, *args)
                d.addCallback(self._rejoined, room, member)
                steps.append(d)
            steps.append(
                self.execute("EVAL", _ROOM, 1, self.key("rooms"), room.name, 0)
            )
            steps.append(room.sync())
        return gatherResults(steps, consumeErrors=True)

    def _rejoined(self, added: int, room: SharedRoom, member: IChatMember) -> None:
        if added:  # we had been reaped: say we are back
            self.publish(room, [ChatEvent(JOIN, room.name, member.nick)])

    def _beatIfUp(self) -> None:
        if self.link.up:
            self.beat().addErrback(self.logFailure, "the heartbeat")

    def beat(self) -> "Deferred[None]":
        """
        Say this process is alive, and reap any process that is not.
        """
        dead = int(self.heartbeat * 2000)
        d = self.execute("EVAL", _HEARTBEAT, 1, self.key("nodes"), self.node, dead)
        sent = self.clock.seconds()

        def beaten(reply: List[Any]) -> Optional["Deferred[Any]"]:
            self.lag = self.clock.seconds() - sent
            new, deadNodes = reply
            for node in deadNodes:
                self.reap(_text(node))
            if new and self.up:  # we were reaped ourselves
                log.warn("chat: another process took this one for dead; rejoining")
                return self.reclaim()
            return None

        return d.addCallback(beaten)

    def reap(self, node: str, reason: str = SERVER_LOST) -> "Deferred[None]":
        """
        Take process C{node}'s members out of every room, with C{reason},
        and free their nicknames.
        """
        if node != self.node:
            log.warn(
                "chat: process {node} stopped beating: its members leave", node=node
            )
        keys = (self.nodeKey("nicks", node), self.nodeKey("rooms", node))
        args = (self.prefix, node, self.defaultRoom)
        d = self.execute("EVAL", _REAP, 2, *keys, *args)

        def announce(gone: List[Any]) -> None:
            byRoom: Dict[str, List[ChatEvent]] = {}
            for i in range(0, len(gone), 3):
                room, nick, left = _text(gone[i]), _text(gone[i + 1]), gone[i + 2]
                if left:
                    event = ChatEvent(LEAVE, room, nick, reason)
                    byRoom.setdefault(room, []).append(event)
            for room, events in byRoom.items():
                d = self._publishTo(room, events)
                d.addErrback(self.logFailure, f"announcing {node}'s loss")

        d.addCallback(announce)
        return d.addErrback(self.logFailure, f"reaping {node}")

    # --- publishing and receiving -----------------------------------------

    def publish(self, room: ChatRoom, events: Sequence[ChatEvent]) -> None:
        """
        Publish C{events} of C{room}, as one message; if that fails, at
        least this process's members get them.
        """
        d = self._publishTo(room.name, events)
        d.addErrback(lambda _: room.deliverBatch(EventBatch(tuple(events))))

    def _publishTo(self, room: str, events: Sequence[ChatEvent]) -> "Deferred[Any]":
        base = f"room:{room}:"
        keys = (
            self.key(base + "seq"),
            self.key(base + "log"),
            self.key(room_channel(room)),
        )
        message = encode_events(events)
        return self.execute("EVAL", _PUBLISH, 3, *keys, self.streamLength, message)

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
        room.received(int(seq), body)

    def _private(self, data: bytes) -> None:
        try:
            events = decode_events(data)
        except MalformedMessageError as e:
            return self.dropped("the private channel", str(e))
        for event in events:
            target = self.find(event.target) if event.kind == PRIVATE else None
            if target is not None:
                target.receive(event)

    # --- nicknames --------------------------------------------------------

    def _claim(self, nick: str) -> "Deferred[Optional[bytes]]":
        key = nick_key(nick)
        keys = (self.key(f"nick:{key}"), self.nodeKey("nicks"))
        return self.execute("EVAL", _CLAIM, 2, *keys, self.node, nick, key)

    def _unclaim(self, nick: str) -> "Deferred[Any]":
        key = nick_key(nick)
        keys = (self.key(f"nick:{key}"), self.nodeKey("nicks"))
        return self.execute("EVAL", _UNCLAIM, 2, *keys, self.node, key)

    def register(self, member: IChatMember) -> "Deferred[str]":
        if not self.up:
            return super().register(member)
        return self._guest(member)

    def _guest(self, member: IChatMember) -> "Deferred[str]":
        d = self.execute("INCR", self.key("guests"))

        def numbered(number: int) -> "Deferred[str]":
            nick = f"guest{number}"
            if self.reserved(nick) or nick_key(nick) in self._members:
                return self._guest(member)
            return self._claim(nick).addCallback(claimed, nick)

        def claimed(holder: Optional[bytes], nick: str) -> Any:
            if holder is not None:
                return self._guest(member)
            self._members[nick_key(nick)] = member
            return nick

        return d.addCallback(numbered)

    def rename(self, member: IChatMember, nick: str) -> "Deferred[None]":
        if not self.up:
            return super().rename(member, nick)
        if not valid_nick(nick):
            return fail(InvalidNickError(f"invalid nickname {nick!r}: {NICK_RULE}"))
        holder = self._members.get(nick_key(nick))
        if holder is not None and holder is not member:
            return super().rename(member, nick)  # the same answer as alone
        old = member.nick
        d = self._claim(nick)

        def claimed(taken: Optional[bytes]) -> "Deferred[None]":
            if taken is not None:
                other = _text(taken).partition(" ")[2]
                by = "" if other.lower() == nick.lower() else f" (by {other})"
                raise NickInUseError(f"nickname {nick} is taken{by}")
            self._forget(member)
            self._members[nick_key(nick)] = member
            steps = [] if nick_key(old) == nick_key(nick) else [self._unclaim(old)]
            rooms = [r.name for r in self._rooms.values() if id(member) in r.members]
            args = (self.prefix, old, nick, *rooms)
            steps.append(
                self.execute("EVAL", _RENAME_MEMBER, 1, self.nodeKey("rooms"), *args)
            )
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
        self._forget(member)
        if not self.up:
            return succeed(None)
        d = self._unclaim(nick)
        d.addErrback(self.logFailure, f"freeing {nick}")
        return d.addCallback(lambda _: None)

    def _holder(self, nick: str) -> "Deferred[Optional[Tuple[str, str]]]":
        d = self.execute("GET", self.key(f"nick:{nick_key(nick)}"))

        def parsed(value: Optional[bytes]) -> Optional[Tuple[str, str]]:
            if value is None:
                return None
            node, _, holder = _text(value).partition(" ")
            return (node, holder) if holder.lower() == nick.lower() else None

        return d.addCallback(parsed)

    def inUse(self, nick: str) -> "Deferred[bool]":
        if not self.up:
            return super().inUse(nick)
        return self._holder(nick).addCallback(lambda holder: holder is not None)

    def tell(self, member: IChatMember, nick: str, text: str) -> "Deferred[ChatEvent]":
        local = self.find(nick)
        if not self.up or local is not None:
            return super().tell(member, nick, text)

        def send(holder: Optional[Tuple[str, str]]) -> "Deferred[ChatEvent]":
            if holder is None:
                raise ChatError(f"no such nickname: {nick}")
            node, target = holder
            event = ChatEvent(PRIVATE, "", member.nick, text, target)
            channel = self.key(f"node:{node}")
            d = self.execute("PUBLISH", channel, encode_events([event]))
            return d.addCallback(delivered, event)

        def delivered(receivers: int, event: ChatEvent) -> ChatEvent:
            if not receivers:
                raise ChatError(f"no such nickname: {nick}")
            return event

        return self._holder(nick).addCallback(send)

    # --- rooms ------------------------------------------------------------

    def room(self, name: str) -> "Deferred[IChatRoom]":
        if not self.up or name in self._rooms:
            return super().room(name)
        d = self.execute("EVAL", _ROOM, 1, self.key("rooms"), name, self.maxRooms)

        def checked(count: int) -> IChatRoom:
            if count:
                raise ChatError(f"too many rooms ({count}): join one of /rooms")
            return self.getRoom(name)

        return d.addCallback(checked)

    def getRoom(self, name: str) -> ChatRoom:
        room = self._rooms.get(name)
        if room is None:
            room = self._rooms[name] = SharedRoom(name, self)
            channel = self.key(room_channel(name)).encode()
            self._roomsByChannel[channel] = room
            d = self.link.subscribe(channel)
            d.addCallback(lambda _: room.sync() if self.link.up else None)
            d.addErrback(self.logFailure, f"subscribing to #{name}")
        return room

    def roomEmptied(self, room: ChatRoom) -> None:
        if room.name == self.defaultRoom or self._rooms.get(room.name) is not room:
            return
        del self._rooms[room.name]
        channel = self.key(room_channel(room.name)).encode()
        self._roomsByChannel.pop(channel, None)
        self.link.unsubscribe(channel)

    def rooms(self) -> "Deferred[List[Tuple[str, int]]]":
        if not self.up:
            return super().rooms()
        d = self.execute("EVAL", _ROOMS, 1, self.key("rooms"), self.prefix)

        def counted(flat: List[Any]) -> List[Tuple[str, int]]:
            pairs = [(_text(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]
            return sorted(pairs)

        return d.addCallback(counted)

    def counts(self) -> Dict[str, float]:
        counts = super().counts()
        counts["broker_up"] = 1 if self.up else 0
        counts["broker_lag"] = self.lag
        return counts

    @property
    def busy(self) -> bool:
        """
        Whether anything is under way: a command, a room's batch or sync.
        """
        return self.link.busy or any(
            room.pending
            or getattr(room, "syncing", False)
            or getattr(room, "_incoming", None)
            for room in self._rooms.values()
        )

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
        d = self.execute("ZREM", self.key("nodes"), self.node)
        d.addCallback(lambda _: self.reap(self.node, "server shutting down"))
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


def room_channel(room: str) -> str:
    """
    The pub/sub channel of C{room}, under the prefix.
    """
    return f"room:{room}"
