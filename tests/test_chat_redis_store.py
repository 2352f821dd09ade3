"""
L{RedisStore} against a real redis-server, without a chat: each key and
script does what the shared back end relies on.
"""

import itertools
from typing import Any, List, Tuple

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from sockproto.chat.backends.redis.resp import RedisLink, parse_redis_url
from sockproto.chat.backends.redis.store import UNREACHABLE, RedisStore
from sockproto.chat.interfaces import ChatError
from sockproto.chat.names import nick_key
from sockproto.testing import RedisServer, wait_for

from .support import module_redis

_prefixes = itertools.count(1)


class StoreTests(TestCase):
    @inlineCallbacks
    def setUp(self) -> Any:
        RedisServer.skipUnlessAvailable()
        self.redis = module_redis()
        self.prefix = f"store{next(_prefixes)}:"
        self.link = RedisLink(parse_redis_url(self.redis.url), reactor, maxDelay=0.2)
        self.messages: List[Tuple[bytes, bytes]] = []
        self.link.onMessage = lambda c, m: self.messages.append((c, m))
        self.link.startService()
        self.addCleanup(lambda: self.link.stopService() if self.link.running else None)
        yield wait_for(lambda: self.link.up)
        self.store = self.storeFor("node-a")

    def storeFor(self, node: str) -> RedisStore:
        return RedisStore(self.link, node, self.prefix, streamLength=100)

    def keys(self) -> List[str]:
        found = self.redis.command("KEYS", self.prefix + "*")
        return sorted(k.decode()[len(self.prefix) :] for k in found)

    @inlineCallbacks
    def test_publish_numbers_keeps_and_sends_each_message(self) -> Any:
        channel = self.store.roomChannel("lobby")
        yield self.link.subscribe(channel)
        first = yield self.store.publish("lobby", b"one")
        second = yield self.store.publish("lobby", b"two")
        self.assertEqual((first, second), (1, 2))
        yield self.link.ping()
        self.assertEqual(self.messages, [(channel, b"1 one"), (channel, b"2 two")])
        last = yield self.store.lastNumber("lobby")
        self.assertEqual(last, 2)
        entries = yield self.store.messages("lobby", 2)
        self.assertEqual(entries, [(2, b"two")])
        entries = yield self.store.messages("lobby", 1, 1)
        self.assertEqual(entries, [(1, b"one")])
        recent = yield self.store.recent("lobby", 2, 10)
        self.assertEqual(recent, [(1, b"one"), (2, b"two")])
        none = yield self.store.lastNumber("empty")
        self.assertEqual(none, 0)

    @inlineCallbacks
    def test_members_in_joining_order_and_an_emptied_room_is_forgotten(self) -> Any:
        added = yield self.store.join("games", "alice")
        again = yield self.store.join("games", "alice")
        yield self.store.join("games", "bob")
        self.assertEqual((added, again), (True, False))
        members = yield self.store.members("games")
        self.assertEqual(members, ["alice", "bob"])
        yield self.store.publish("games", b"hello")
        left = yield self.store.leave("games", "alice", keepEmpty=False)
        self.assertEqual(left, 1)
        rooms = yield self.store.rooms()
        self.assertEqual(rooms, [("games", 1)])
        left = yield self.store.leave("games", "bob", keepEmpty=False)
        self.assertEqual(left, 0)
        rooms = yield self.store.rooms()
        self.assertEqual(rooms, [])
        self.assertNotIn("room:games:log", self.keys())

    @inlineCallbacks
    def test_the_default_room_and_its_history_stay_when_empty(self) -> Any:
        yield self.store.join("lobby", "alice")
        yield self.store.publish("lobby", b"kept")
        yield self.store.leave("lobby", "alice", keepEmpty=True)
        rooms = yield self.store.rooms()
        self.assertEqual(rooms, [("lobby", 0)])
        entries = yield self.store.messages("lobby", 1)
        self.assertEqual(entries, [(1, b"kept")])

    @inlineCallbacks
    def test_add_room_refuses_one_too_many(self) -> Any:
        results = []
        for room in ("a", "b", "c", "a"):
            results.append((yield self.store.addRoom(room, 2)))
        self.assertEqual(results, [0, 0, 2, 0])
        unlimited = yield self.store.addRoom("c", 0)
        self.assertEqual(unlimited, 0)

    @inlineCallbacks
    def test_a_claim_covers_look_alikes_and_is_one_process_s(self) -> Any:
        other = self.storeFor("node-b")
        mine = yield self.store.claim("Alice")
        self.assertIsNone(mine)
        again = yield self.store.claim("Alice")  # ours already: fine
        self.assertIsNone(again)
        taken = yield other.claim("al1ce")  # a look-alike
        self.assertEqual(taken, "Alice")
        holder = yield other.holder("alice")
        self.assertEqual(holder, ("node-a", "Alice"))
        lookAlike = yield other.holder("al1ce")  # not the nickname itself
        self.assertIsNone(lookAlike)
        yield other.unclaim("Alice")  # not its claim: nothing happens
        self.assertEqual((yield other.holder("Alice")), ("node-a", "Alice"))
        yield self.store.unclaim("Alice")
        self.assertIsNone((yield other.holder("Alice")))
        free = yield other.claim("al1ce")
        self.assertIsNone(free)

    @inlineCallbacks
    def test_guest_numbers_count_up(self) -> Any:
        numbers = []
        for _ in range(3):
            numbers.append((yield self.store.nextGuest()))
        self.assertEqual(numbers, [1, 2, 3])

    @inlineCallbacks
    def test_rename_member_keeps_the_place_in_each_room(self) -> Any:
        for nick in ("alice", "bob", "carol"):
            yield self.store.join("lobby", nick)
        yield self.store.join("games", "alice")
        yield self.store.renameMember("alice", "zed", ["lobby", "games"])
        lobby = yield self.store.members("lobby")
        games = yield self.store.members("games")
        self.assertEqual((lobby, games), (["zed", "bob", "carol"], ["zed"]))

    @inlineCallbacks
    def test_heartbeat_says_new_then_reap_frees_a_silent_process(self) -> Any:
        dead = self.storeFor("node-dead")
        new, found = yield dead.heartbeat(60)
        self.assertEqual((new, found), (True, []))
        yield dead.claim("bob")
        yield dead.join("lobby", "bob")
        yield dead.join("games", "bob")
        yield self.store.join("lobby", "alice")
        again, found = yield self.store.heartbeat(60)
        self.assertEqual((again, found), (True, []))
        # A score made old by anyone who can write to Redis reaps nobody:
        # node-dead's own key says it beats.
        self.redis.command("ZADD", self.prefix + "nodes", 0, "node-dead")
        self.redis.command("SET", self.prefix + "node:node-a:since", 0)
        new, found = yield self.store.heartbeat(60)
        self.assertEqual((new, found), (False, []))
        # Its key expired too (it stopped beating), but the reaper itself
        # only just began beating: nobody is reaped yet.
        self.redis.command("DEL", self.prefix + "node:node-dead:alive")
        self.redis.command("DEL", self.prefix + "node:node-a:since")
        new, found = yield self.store.heartbeat(60)
        self.assertEqual((new, found), (False, []))
        # The reaper has beaten for two minutes: node-dead is dead.
        self.redis.command("SET", self.prefix + "node:node-a:since", 0)
        new, found = yield self.store.heartbeat(60)
        self.assertEqual((new, found), (False, ["node-dead"]))
        gone = yield self.store.reap("node-dead", "lobby")
        self.assertEqual(sorted(gone), [("games", "bob", 0), ("lobby", "bob", 1)])
        self.assertIsNone((yield self.store.holder("bob")))
        rooms = yield self.store.rooms()
        self.assertEqual(rooms, [("lobby", 1)])
        self.assertNotIn("node:node-dead:nicks", self.keys())
        self.assertNotIn("node:node-dead:rooms", self.keys())

    @inlineCallbacks
    def test_private_messages_go_to_one_process_s_channel(self) -> Any:
        yield self.link.subscribe(self.store.nodeChannel())
        received = yield self.storeFor("node-b").sendPrivate("node-a", b"psst")
        self.assertEqual(received, 1)
        nobody = yield self.store.sendPrivate("node-gone", b"psst")
        self.assertEqual(nobody, 0)
        yield self.link.ping()
        self.assertEqual(self.messages, [(self.store.nodeChannel(), b"psst")])

    @inlineCallbacks
    def test_leaving_the_process_list(self) -> Any:
        yield self.store.heartbeat(60)
        yield self.store.leaveNodes()
        nodes = self.redis.command("ZRANGE", self.prefix + "nodes", 0, -1)
        self.assertEqual(nodes, [])

    @inlineCallbacks
    def test_while_redis_is_unreachable_commands_fail_with_a_chat_error(self) -> Any:
        yield self.link.stopService()
        yield wait_for(lambda: not self.link.up)
        error = yield self.assertFailure(self.store.claim("alice"), ChatError)
        self.assertEqual(str(error), UNREACHABLE)

    @inlineCallbacks
    def test_names_read_from_redis_follow_the_rules_or_are_dropped(self) -> Any:
        yield self.store.join("lobby", "alice")
        prefix = self.prefix
        self.redis.command("ZADD", f"{prefix}room:lobby:members", 99, "\x1b[2JEVIL")
        self.redis.command("ZADD", f"{prefix}room:lobby:members", 98, "a\r\nb")
        self.redis.command("SADD", f"{prefix}rooms", "bad\r\nroom", "UPPER")
        self.redis.command(
            "SET", f"{prefix}nick:{nick_key('evil')}", "node-x evil\r\nx"
        )
        members = yield self.store.members("lobby")
        self.assertEqual(members, ["alice"])
        rooms = yield self.store.rooms()
        self.assertEqual(rooms, [("lobby", 3)])  # a count: no name shown
        self.assertIsNone((yield self.store.holder("evil")))
        taken = yield self.store.claim("evil")
        self.assertEqual(taken, "evil")  # taken, by a name not shown
        errors = self.flushLoggedErrors()
        self.assertEqual(errors, [])
