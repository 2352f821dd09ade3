# -*- test-case-name: tests.test_chat_redis_store -*-
"""
What the shared chat keeps in Redis, and the one module that knows how:
key names, Lua scripts, and the replies they give, as Python values.

Keys, under the prefix (C{sockproto:} by default)::

    nick:KEY              "NODE NICK": who holds a nickname (KEY is its
                          look-alike key, L{sockproto.chat.names.nick_key})
    guests                the last guest number handed out
    rooms                 the set of rooms
    room:R:members        sorted set of R's nicknames, in joining order
    room:R:seq            the number of R's last message
    room:R:log            capped stream of R's messages, id 0-SEQ
    room:R:epoch          who made R's numbering start, and when: a new
                          epoch means Redis lost R's state (restarted
                          empty, or flushed), and numbers start again
    order                 joining counter (the members' scores)
    nodes                 sorted set of processes, by last heartbeat (ms)
    node:N:alive          exists while process N beats (expires after
                          two heartbeats): a forged score alone reaps nobody
    node:N:since          when N's current run of heartbeats began (ms)
    node:N:nicks          the look-alike keys process N claimed
    node:N:rooms          "ROOM NICK" for each of N's memberships

A claim is "NODE NICK", or "NODE NICK ~SINCE" for a nickname its holder
took while Redis was away (SINCE: when, in ms): such a claim gives way,
on reconnection, to a holder from before (see L{RedisStore.claim}).

The stream, not the counter, says where a room is: publishing numbers a
message past both, so a counter set back (or forward past any real
number) is repaired by the next message.

Channels: C{room:R} carries "SEQ MESSAGE" for each message of R;
C{node:N} carries private messages to process N's members.

Every command that fails because Redis went away, or refused it (out of
memory, a script error), fails with a L{ChatError} a user can read ("try
again"); L{RedisStore.onRefused} hears of each refusal.
"""

from typing import Any, Callable, List, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure

from ....logs import SafeLogger
from ...interfaces import ChatError
from ...names import nick_key, valid_nick, valid_room
from .resp import RedisError, RedisLink

__all__ = ["LOST", "RedisStore", "UNREACHABLE"]

UNREACHABLE = "the chat network is unavailable: try again"
LOST = b"!lost "
"""On a process's channel, then a look-alike key: a nickname it held was
claimed by an earlier holder (the process checks before it believes it)."""
MAX_NUMBER = 2**63 - 1
"""The largest number Redis counts to (INCR): a larger one is forged."""

log = SafeLogger()

# The number the stream's last entry carries (0 if none); an entry the
# scripts did not write (its id not 0-N) is an error: someone else writes
# the room's stream.  Numbers stay below 2^52, where Lua's are exact.
_TOP = """
local function top(stream)
  local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1]
  if not last then return 0 end
  local n = tonumber(string.match(last[1], '^0%-(%d+)$'))
  if not n or n >= 2^52 then
    return redis.error_reply('ERR ' .. stream .. ' was written by someone else')
  end
  return n
end
local function position(counter, stream)
  local n = top(stream)
  if type(n) == 'table' then return n end
  local seq = tonumber(redis.call('GET', counter) or '0')
  if not seq or seq < n or seq >= 2^52 or seq ~= math.floor(seq) then
    seq = n
    redis.call('SET', counter, seq)
  end
  return seq
end
local function epoch(key)
  local e = redis.call('GET', key)
  if e then return e end
  local t = redis.call('TIME')
  e = t[1] .. '.' .. t[2]
  redis.call('SET', key, e)
  return e
end
"""

# KEYS: seq, stream, channel, epoch.  ARGV: stream length, message.
_PUBLISH = (
    _TOP
    + """
local seq = position(KEYS[1], KEYS[2])
if type(seq) == 'table' then return seq end
seq = seq + 1
redis.call('SET', KEYS[1], seq)
epoch(KEYS[4])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '0-' .. seq, 'm', ARGV[2])
redis.call('PUBLISH', KEYS[3], seq .. ' ' .. ARGV[2])
return seq
"""
)

# KEYS: seq, stream, epoch.  Returns {number, epoch}.
_POSITION = (
    _TOP
    + """
local seq = position(KEYS[1], KEYS[2])
if type(seq) == 'table' then return seq end
return {seq, epoch(KEYS[3])}
"""
)

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

# KEYS: members, rooms, node rooms, stream.  ARGV: nick, room, keep empty.
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

# KEYS: claim, node nicks.  ARGV: node, nick, key, since (ms), alone
# ('1': taken while Redis was away), reclaiming ('1').  Returns {holder}
# if it is someone else's, {} once claimed, or {false, displaced node}
# once claimed from a holder who took it while away, later than ours.
_CLAIM = """
local holder = redis.call('GET', KEYS[1])
local value = ARGV[1] .. ' ' .. ARGV[2]
if ARGV[5] == '1' then value = value .. ' ~' .. ARGV[4] end
if holder and string.sub(holder, 1, #ARGV[1] + 1) ~= ARGV[1] .. ' ' then
  local since = tonumber(string.match(holder, ' ~(%d+)$'))
  if ARGV[6] ~= '1' or not since or since <= tonumber(ARGV[4]) then
    return {holder}
  end
  redis.call('SET', KEYS[1], value)
  redis.call('SADD', KEYS[2], ARGV[3])
  return {false, string.match(holder, '^(%S+) ')}
end
redis.call('SET', KEYS[1], value)
redis.call('SADD', KEYS[2], ARGV[3])
return {}
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

# KEYS: nodes, alive, since.  ARGV: node, dead after (ms), a beat is
# recent within (ms), prefix.  Returns {newly added, dead nodes}.
#
# A node reaps another only when it has itself been beating for twice
# "dead after" (so a node cut off from Redis, or all of them after Redis
# stalled, reaps nobody on coming back: the others have that long to
# reconnect) and the other's own key expired (so a score written by
# someone else reaps nobody).
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadAfter = tonumber(ARGV[2])
local prev = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
local since = tonumber(redis.call('GET', KEYS[3]))
if not prev or not since or now - prev > tonumber(ARGV[3]) then since = now end
local new = redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('SET', KEYS[2], '1', 'PX', deadAfter)
redis.call('SET', KEYS[3], since, 'PX', 3 * deadAfter)
local dead = {}
if now - since >= 2 * deadAfter then
  local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - deadAfter)
  for _, node in ipairs(old) do
    if redis.call('EXISTS', ARGV[4] .. 'node:' .. node .. ':alive') == 0 then
      redis.call('ZREM', KEYS[1], node)
      table.insert(dead, node)
    end
  end
end
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

Entries = List[Tuple[int, bytes]]
"""A room's stored messages: (number, message), oldest first."""


def text(value: Any) -> str:
    """
    A string Redis answered (bytes), as text.
    """
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def integer(value: Any) -> Optional[int]:
    """
    A number Redis answered (bytes), or None.
    """
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def checked_nick(value: Any, where: str) -> Optional[str]:
    """
    A nickname read from Redis, if it follows the rules for typed ones;
    else None, logged (anyone who can write to Redis could have put CR LF
    or escapes there, to be shown to every client).
    """
    nick = text(value)
    if valid_nick(nick):
        return nick
    log.warn(
        "chat: dropped an invalid nickname {nick!r} read from Redis ({where})",
        nick=nick[:40],
        where=where,
    )
    return None


def checked_room(value: Any, where: str) -> Optional[str]:
    """
    A room name read from Redis, if valid (see L{checked_nick}); else None.
    """
    room = text(value)
    if valid_room(room) == room:
        return room
    log.warn(
        "chat: dropped an invalid room name {room!r} read from Redis ({where})",
        room=room[:40],
        where=where,
    )
    return None


def _entries(reply: Sequence[Any]) -> Entries:
    entries = []
    for entry_id, fields in reply:
        seq = integer(text(entry_id).partition("-")[2])
        if seq is not None:
            entries.append((seq, fields[1] if len(fields) >= 2 else b""))
    return entries


class RedisStore:
    """
    The shared chat's state in Redis, for process C{node}.

    @ivar streamLength: about how many messages each room's stream keeps
        (for history and backfill).
    """

    def __init__(
        self,
        link: RedisLink,
        node: str,
        prefix: str = "sockproto:",
        streamLength: int = 1000,
    ) -> None:
        self.link = link
        self.node = node
        self.prefix = prefix
        self.streamLength = streamLength
        self.onRefused: Callable[[Failure], None] = lambda failure: None

    def key(self, name: str) -> str:
        return self.prefix + name

    def roomKey(self, room: str, what: str) -> str:
        return self.key(f"room:{room}:{what}")

    def nodeKey(self, what: str, node: Optional[str] = None) -> str:
        return self.key(f"node:{node or self.node}:{what}")

    def roomChannel(self, room: str) -> bytes:
        """The channel carrying C{room}'s numbered messages."""
        return self.key(f"room:{room}").encode()

    def nodeChannel(self, node: Optional[str] = None) -> bytes:
        """The channel carrying private messages to C{node} (this one)."""
        return self.key(f"node:{node or self.node}").encode()

    def execute(self, *args: Any) -> "Deferred[Any]":
        """
        Run a Redis command; if Redis is lost meanwhile, fail with a
        L{ChatError} that tells the user to try again.
        """
        return self.link.execute(*args).addErrback(self._failed)

    def _failed(self, failure: Failure) -> Failure:
        if failure.check(ConnectionLost):
            raise ChatError(UNREACHABLE)
        if failure.check(RedisError):
            self.onRefused(failure)
            raise ChatError(UNREACHABLE)
        return failure

    def _eval(self, script: str, keys: Sequence[str], *args: Any) -> "Deferred[Any]":
        return self.execute("EVAL", script, len(keys), *keys, *args)

    # --- rooms ------------------------------------------------------------

    def publish(self, room: str, message: bytes) -> "Deferred[int]":
        """
        Number C{message} as C{room}'s next, keep it in the room's stream,
        and publish it on the room's channel.

        @return: its number.
        """
        keys = (
            self.roomKey(room, "seq"),
            self.roomKey(room, "log"),
            self.roomChannel(room).decode(),
            self.roomKey(room, "epoch"),
        )
        return self._eval(_PUBLISH, keys, self.streamLength, message)

    def position(self, room: str) -> "Deferred[Tuple[int, str]]":
        """
        Where C{room} is: the number of its last message (the stream's
        if the counter is behind it) and its epoch (made if it has none).
        """
        keys = (
            self.roomKey(room, "seq"),
            self.roomKey(room, "log"),
            self.roomKey(room, "epoch"),
        )
        d = self._eval(_POSITION, keys)
        return d.addCallback(lambda reply: (int(reply[0]), text(reply[1])))

    def addRoom(self, room: str, maxRooms: int) -> "Deferred[int]":
        """
        Add C{room} to the rooms, unless it would be one too many.

        @return: 0 if it is there, else how many rooms there are.
        """
        return self._eval(_ROOM, [self.key("rooms")], room, maxRooms)

    def join(self, room: str, nick: str) -> "Deferred[bool]":
        """
        Make C{nick}, of this process, a member of C{room}.

        @return: whether it was not a member already.
        """
        keys = (
            self.roomKey(room, "members"),
            self.key("rooms"),
            self.nodeKey("rooms"),
            self.key("order"),
        )
        return self._eval(_JOIN, keys, nick, room).addCallback(bool)

    def leave(self, room: str, nick: str, keepEmpty: bool) -> "Deferred[int]":
        """
        Take C{nick}, of this process, out of C{room}; forget the room and
        its stream once empty, unless C{keepEmpty}.

        @return: how many members are left.
        """
        keys = (
            self.roomKey(room, "members"),
            self.key("rooms"),
            self.nodeKey("rooms"),
            self.roomKey(room, "log"),
        )
        return self._eval(_LEAVE, keys, nick, room, "1" if keepEmpty else "0")

    def members(self, room: str) -> "Deferred[List[str]]":
        """C{room}'s nicknames, in joining order."""
        d = self.execute("ZRANGE", self.roomKey(room, "members"), 0, -1)
        where = f"#{room}'s members"

        def valid(names: List[Any]) -> List[str]:
            nicks = [checked_nick(n, where) for n in names]
            return [n for n in nicks if n is not None]

        return d.addCallback(valid)

    def rooms(self) -> "Deferred[List[Tuple[str, int]]]":
        """Each room and its number of members, by name."""
        d = self._eval(_ROOMS, [self.key("rooms")], self.prefix)

        def counted(flat: List[Any]) -> List[Tuple[str, int]]:
            pairs = []
            for i in range(0, len(flat), 2):
                room = checked_room(flat[i], "the room list")
                if room is not None:
                    pairs.append((room, int(flat[i + 1])))
            return sorted(pairs)

        return d.addCallback(counted)

    def lastNumber(self, room: str) -> "Deferred[int]":
        """The number of C{room}'s last message (0 if none)."""
        d = self.execute("GET", self.roomKey(room, "seq"))
        return d.addCallback(lambda value: integer(value) or 0)

    def messages(
        self, room: str, first: int, last: Optional[int] = None
    ) -> "Deferred[Entries]":
        """C{room}'s stored messages numbered C{first} to C{last} (or on)."""
        end = "+" if last is None else f"0-{last}"
        d = self.execute("XRANGE", self.roomKey(room, "log"), f"0-{first}", end)
        return d.addCallback(_entries)

    def recent(self, room: str, last: int, count: int) -> "Deferred[Entries]":
        """C{room}'s last C{count} stored messages up to number C{last}."""
        key = self.roomKey(room, "log")
        d = self.execute("XREVRANGE", key, f"0-{last}", "-", "COUNT", count)
        return d.addCallback(lambda reply: list(reversed(_entries(reply))))

    def renameMember(self, old: str, new: str, rooms: Sequence[str]) -> "Deferred[Any]":
        """Call C{old} C{new} in C{rooms}' members (keeping its place)."""
        return self._eval(
            _RENAME_MEMBER, [self.nodeKey("rooms")], self.prefix, old, new, *rooms
        )

    # --- nicknames --------------------------------------------------------

    def claim(
        self, nick: str, since: float = 0.0, alone: bool = False, again: bool = False
    ) -> "Deferred[Optional[str]]":
        """
        Claim C{nick} (and its look-alikes) for this process.

        @param since: when (seconds since the epoch) its member took it.
        @param alone: whether it was taken while Redis was away; the claim
            then gives way to an earlier holder's reclaiming it.
        @param again: whether this reclaims a nickname held before Redis
            went away: it displaces a claim of one taken while away later.
        @return: None once claimed; else the holder's nickname.  A holder
            displaced is told, on its process's channel (L{LOST}).
        """
        key = nick_key(nick)
        keys = (self.key(f"nick:{key}"), self.nodeKey("nicks"))
        args = (self.node, nick, key, int(since * 1000), int(alone), int(again))
        d = self._eval(_CLAIM, keys, *args)

        def holder(reply: List[Any]) -> Optional[str]:
            if not reply:
                return None
            if reply[0] is None:  # displaced another: it must know
                if len(reply) > 1 and reply[1] is not None:
                    told = self.sendPrivate(text(reply[1]), LOST + key.encode())
                    told.addErrback(lambda _: None)  # else it learns on reclaiming
                return None
            value = text(reply[0]).partition(" ")[2].partition(" ")[0]
            name = checked_nick(value, f"the claim of {nick}")
            return name if name is not None else nick  # taken, by whoever

        return d.addCallback(holder)

    def unclaim(self, nick: str) -> "Deferred[Any]":
        """Free C{nick}, if this process holds it."""
        key = nick_key(nick)
        keys = (self.key(f"nick:{key}"), self.nodeKey("nicks"))
        return self._eval(_UNCLAIM, keys, self.node, key)

    def holder(self, nick: str) -> "Deferred[Optional[Tuple[str, str]]]":
        """
        Who uses C{nick} exactly (ignoring case): (process, nickname).
        """
        d = self.execute("GET", self.key(f"nick:{nick_key(nick)}"))

        def parsed(value: Optional[bytes]) -> Optional[Tuple[str, str]]:
            if value is None:
                return None
            node, _, holder = text(value).partition(" ")
            holder = holder.partition(" ")[0]
            if holder.lower() != nick.lower() or not valid_nick(holder):
                return None
            return (node, holder)

        return d.addCallback(parsed)

    def nextGuest(self) -> "Deferred[int]":
        """The next guest number."""
        return self.execute("INCR", self.key("guests"))

    def sendPrivate(self, node: str, message: bytes) -> "Deferred[int]":
        """
        Send C{message} to process C{node}.

        @return: how many processes received it (0: it is gone).
        """
        return self.execute("PUBLISH", self.nodeChannel(node), message)

    # --- processes --------------------------------------------------------

    def heartbeat(self, deadAfter: float) -> "Deferred[Tuple[bool, List[str]]]":
        """
        Say this process is alive; take out of the process list those
        silent for C{deadAfter} seconds (by Redis's clock).

        @return: whether this process was not listed (new, or reaped), and
            the processes found dead.
        """
        deadAfterMs = int(deadAfter * 1000)
        keys = (self.key("nodes"), self.nodeKey("alive"), self.nodeKey("since"))
        recent = int(deadAfterMs * 0.75)
        d = self._eval(_HEARTBEAT, keys, self.node, deadAfterMs, recent, self.prefix)

        def parsed(reply: List[Any]) -> Tuple[bool, List[str]]:
            return bool(reply[0]), [text(node) for node in reply[1]]

        return d.addCallback(parsed)

    def reap(
        self, node: str, defaultRoom: str
    ) -> "Deferred[List[Tuple[str, str, int]]]":
        """
        Take process C{node}'s members out of every room, forgetting rooms
        left empty (but C{defaultRoom}), and free its nicknames.

        @return: (room, nickname, members left) for each membership.
        """
        keys = (self.nodeKey("nicks", node), self.nodeKey("rooms", node))
        d = self._eval(_REAP, keys, self.prefix, node, defaultRoom)

        def parsed(flat: List[Any]) -> List[Tuple[str, str, int]]:
            gone = []
            for i in range(0, len(flat), 3):
                room = checked_room(flat[i], f"{node}'s memberships")
                nick = checked_nick(flat[i + 1], f"{node}'s memberships")
                if room is not None and nick is not None:
                    gone.append((room, nick, int(flat[i + 2])))
            return gone

        return d.addCallback(parsed)

    def leaveNodes(self) -> "Deferred[Any]":
        """Take this process off the process list."""
        keys = (self.nodeKey("alive"), self.nodeKey("since"))
        d = self.execute("ZREM", self.key("nodes"), self.node)
        return d.addCallback(lambda _: self.execute("DEL", *keys))

    def evictionPolicy(self) -> "Deferred[Optional[str]]":
        """
        Redis's C{maxmemory-policy} if it may evict keys when full (a
        C{maxmemory} is set and the policy is not C{noeviction}), else
        None.  (From C{INFO memory}: managed services often disable
        C{CONFIG}.)
        """
        d = self.link.execute("INFO", "memory")  # a refusal is not an outage

        def parsed(reply: Any) -> Optional[str]:
            fields = dict(
                line.split(":", 1) for line in text(reply).splitlines() if ":" in line
            )
            policy = fields.get("maxmemory_policy", "noeviction").strip()
            limit = integer(fields.get("maxmemory", "0").strip()) or 0
            return policy if limit and policy != "noeviction" else None

        return d.addCallback(parsed)
