"""
The shared chat under the faults of a failing infrastructure, on a real
redis-server: Redis stalls (C{SIGSTOP}), fills up, evicts, restarts
empty, or is written to by someone else; a node pauses past the others'
patience; a message too big for the subscribers.  Each test injects one
fault under three nodes and checks what the users see: nothing lost
outside the outage, nothing forged, nobody falsely gone or back, and
everyone told when they are alone and when they are not.

(The long version, with numbered traffic from hundreds of clients on
C{twistd} nodes: C{python benchmarks/faults.py}, see docs/redis.md.)
"""

from typing import Any, Dict, List

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from sockproto.chat.backends.redis.resp import RedisLink, parse_redis_url
from sockproto.chat.backends.redis.server import RedisChatServer
from sockproto.chat.backends.redis.stream import LOST_STATE
from sockproto.chat.backends.redis.wire import encode_events
from sockproto.chat.events import ChatEvent
from sockproto.testing import ChatOnClock, RedisServer, temporary_directory, wait_for
from sockproto.testing.behaviour import LineUser

from .test_chat_shared import BACK_TEXT, UNAVAILABLE_TEXT, ThreeNodes

UNAVAILABLE = ("notice", UNAVAILABLE_TEXT)
BACK = ("notice", BACK_TEXT)


def pause(seconds: float) -> Any:
    """Let real time pass: the fault lasts that long (Redis's own clock)."""
    return deferLater(reactor, seconds, lambda: None)


class LogWatcher:
    def watchLogs(self) -> List[str]:
        lines: List[str] = []

        def observe(event: Dict[str, Any]) -> None:
            text = formatEvent(event)
            if text and text.startswith("chat:") or text.startswith("redis:"):
                lines.append(text)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)  # type: ignore
        return lines


def departures(seen: List[Any]) -> List[Any]:
    return [s for s in seen if s[0] in ("leave", "join")]


class StalledRedisTests(ThreeNodes, LogWatcher, TestCase):
    """
    Redis stops answering, its connections open (C{SIGSTOP}), then goes on.
    """

    privateRedis = True
    linkTimeout = 0.5

    @inlineCallbacks
    def test_a_stall_is_an_outage_after_the_deadline_and_nobody_is_reaped(
        self,
    ) -> Any:
        alice, bob, carol = yield self.named("alice", "bob", "carol")
        dave = LineUser(self.chats[0])  # alice's node
        yield self.turn()
        dave.send("/nick dave")
        yield self.turn()
        users = (alice, bob, carol, dave)
        for user in users:
            user.seen()
        self.redis.pause()
        self.addCleanup(self.redis.resume)
        yield wait_for(lambda: not any(s.up for s in self.servers), timeout=5)
        yield deferLater(reactor, 0, lambda: None)
        for user in users:
            self.assertEqual(user.seen(), [UNAVAILABLE])
        alice.send("only here")  # between two clients of one node: at once
        self.clock.advance(0)
        yield deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(dave.seen(), [("message", "alice", "only here")])
        yield pause(1.5)  # longer than two heartbeats: every beat is old
        self.redis.resume()
        yield wait_for(lambda: all(s.up for s in self.servers), timeout=15)
        yield pause(6 * self.heartbeat)  # every node beats, and would reap
        yield self.turn()
        for user in users:
            seen = user.seen()
            self.assertEqual(departures(seen), [])  # no one left, no one back
            self.assertEqual(seen.count(BACK), 1, seen)
        bob.send("across again")
        yield self.turn()
        for user in (alice, carol, dave):
            self.assertEqual(user.seen(), [("message", "bob", "across again")])


class FullRedisTests(ThreeNodes, LogWatcher, TestCase):
    """
    Redis runs out of memory (refusing writes), or may evict keys.
    """

    privateRedis = True

    @inlineCallbacks
    def test_refused_writes_are_an_outage_told_once_and_logged_once(self) -> Any:
        logs = self.watchLogs()
        alice, bob, carol = yield self.named("alice", "bob", "carol")
        self.redis.command("CONFIG", "SET", "maxmemory", "1")  # full at once
        alice.send("while full")
        alice.send("still full")
        yield wait_for(lambda: not any(s.up for s in self.servers), timeout=5)
        self.clock.advance(0)
        yield deferLater(reactor, 0.01, lambda: None)
        seen = alice.seen()
        self.assertEqual(seen.count(UNAVAILABLE), 1, seen)
        self.assertIn(("message", "alice", "still full"), seen)
        for user in (bob, carol):
            self.assertEqual(user.seen(), [UNAVAILABLE])
        refusals = [line for line in logs if "Redis refused a command (OOM" in line]
        self.assertEqual(len(refusals), 3, logs)  # one per node
        self.redis.command("CONFIG", "SET", "maxmemory", "0")
        yield wait_for(lambda: all(s.up for s in self.servers), timeout=10)
        yield self.turn()
        for user in (alice, bob, carol):
            self.assertEqual(user.seen(), [BACK])
        bob.send("room for more")
        yield self.turn()
        for user in (alice, carol):
            self.assertEqual(user.seen(), [("message", "bob", "room for more")])

    @inlineCallbacks
    def test_an_evicting_redis_is_refused_with_one_clear_line(self) -> Any:
        logs = self.watchLogs()
        alice, bob = yield self.named("alice", "bob")
        self.redis.command("CONFIG", "SET", "maxmemory", "100mb")
        self.redis.command("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
        yield wait_for(lambda: not any(s.up for s in self.servers), timeout=5)
        yield pause(4 * self.heartbeat)  # it checks at each heartbeat
        self.clock.advance(0)
        yield deferLater(reactor, 0, lambda: None)
        for user in (alice, bob):
            self.assertEqual(user.seen(), [UNAVAILABLE])
        evicting = [line for line in logs if "maxmemory-policy allkeys-lru" in line]
        self.assertEqual(len(evicting), 3, logs)  # once per node, not per beat
        self.assertIn("needs maxmemory-policy noeviction", evicting[0])
        self.redis.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
        yield wait_for(lambda: all(s.up for s in self.servers), timeout=10)
        yield self.turn()
        self.assertEqual(alice.seen(), [BACK])


class ForgedStateTests(ThreeNodes, TestCase):
    """
    Someone with write access to Redis sets a room's counter back, or
    publishes on its channel.
    """

    @inlineCallbacks
    def test_a_counter_set_back_is_repaired_from_the_stream(self) -> Any:
        alice, bob = yield self.named("alice", "bob")
        for n in range(5):
            alice.send(f"line {n}")
        yield self.turn()
        bob.seen()
        self.redis.command("SET", f"{self.prefix}room:lobby:seq", 0)
        alice.send("after the reset")
        yield self.turn()
        self.assertEqual(bob.seen(), [("message", "alice", "after the reset")])
        seq = int(self.redis.command("GET", f"{self.prefix}room:lobby:seq"))
        self.assertGreater(seq, 5)

    @inlineCallbacks
    def test_a_forged_message_with_the_next_number_never_displaces_the_real(
        self,
    ) -> Any:
        alice, bob, carol = yield self.named("alice", "bob", "carol")
        seq = int(self.redis.command("GET", f"{self.prefix}room:lobby:seq"))
        forged = encode_events([ChatEvent("message", "lobby", "alice", "fake")])
        channel = f"{self.prefix}room:lobby"
        for n in range(1, 4):
            self.redis.command(
                "PUBLISH", channel, str(seq + n).encode() + b" " + forged
            )
        yield self.turn()
        alice.send("real one")
        alice.send("real two")
        yield self.turn()
        for user in (bob, carol):
            self.assertEqual(
                [s for s in user.seen() if s[0] == "message"],
                [("message", "alice", "real one"), ("message", "alice", "real two")],
            )
        self.flushLoggedErrors()


class EmptyRestartTests(ThreeNodes, LogWatcher, TestCase):
    """
    Redis restarts with nothing (no persistence): numbers start again.
    """

    privateRedis = True

    @inlineCallbacks
    def test_a_late_node_gets_the_new_epoch_from_its_first_line(self) -> Any:
        logs = self.watchLogs()
        alice, bob, carol = yield self.named("alice", "bob", "carol")
        for n in range(10):  # carol's node has delivered up to 13 or so
            alice.send(f"before {n}")
        yield self.turn()
        for user in (alice, bob, carol):
            user.seen()
        late = self.servers[2]  # carol's node, away across the restart
        yield late.link.stopService()
        late.presence.linkDown()  # as its connections' loss would say
        carol.seen()
        self.redis.stop()
        yield wait_for(lambda: not any(s.up for s in self.servers[:2]), timeout=5)
        self.redis.start()
        yield wait_for(lambda: all(s.link.up for s in self.servers[:2]), timeout=15)
        yield wait_for(lambda: all(s.up for s in self.servers[:2]), timeout=15)
        for n in range(3):
            bob.send(f"new {n}")
        yield self.turn()
        late.link.startService()
        yield wait_for(lambda: late.up, timeout=15)
        yield self.turn()
        seen = carol.seen()
        said = [s for s in seen if s[0] == "message"]
        expected = [("message", "bob", f"new {n}") for n in range(3)]
        self.assertEqual(said, expected, (seen, alice.seen(), bob.seen()))
        self.assertIn(("notice", LOST_STATE), seen)
        self.assertIn(BACK, seen)
        self.assertEqual(departures(seen), [])
        self.assertEqual(departures(alice.seen()), [])  # nobody came "back"
        self.assertTrue(any("lost the room's state" in line for line in logs), logs)

    @inlineCallbacks
    def test_a_nick_taken_while_away_gives_way_to_its_holder_from_before(
        self,
    ) -> Any:
        alice, zed = yield self.named("alice", "zed")  # zed on node 1
        self.redis.stop()
        yield wait_for(lambda: not any(s.up for s in self.servers), timeout=5)
        alice.send("/nick zed")  # node 0, alone, says yes
        yield deferLater(reactor, 0.05, lambda: None)
        # Node 0 claims first after the (empty) restart; zed's comes after.
        first, holder = self.servers[0], self.servers[1]
        reclaim = holder.presence.reclaim

        @inlineCallbacks
        def later() -> Any:
            yield wait_for(lambda: first.up, timeout=15)
            result = yield reclaim()
            return result

        holder.presence.reclaim = later  # type: ignore[method-assign]
        self.redis.start()
        yield wait_for(lambda: all(s.up for s in self.servers), timeout=15)
        yield pause(0.2)
        yield self.turn()
        renamed = [
            s for s in alice.seen() if s[0] == "notice" and "zed was taken" in s[1]
        ]
        self.assertEqual(len(renamed), 1, renamed)
        self.assertFalse([s for s in zed.seen() if "was taken" in str(s)])
        owner = yield self.servers[2].store.holder("zed")
        self.assertEqual(owner, (holder.node, "zed"))


class PausedNodeTests(ThreeNodes, TestCase):
    """
    A node stops (its process paused, its reactor blocked) long enough
    for the others to take it for dead, then goes on.
    """

    linkTimeout = 0.5

    @inlineCallbacks
    def test_a_paused_node_claims_its_nicknames_again_before_publishing(
        self,
    ) -> Any:
        alice, bob = yield self.named("alice", "bob")
        dave = LineUser(self.chats[1])  # bob's node
        yield self.turn()
        dave.send("/nick dave")
        yield self.turn()
        alice.seen(), bob.seen(), dave.seen()
        paused = self.servers[1]
        paused.presence.beating.stop()  # what a paused process does: nothing
        seen: List[Any] = []
        gone = ("leave", "bob", "lobby", "server lost")
        yield wait_for(lambda: seen.extend(alice.seen()) or gone in seen, timeout=5)
        alice.send("/nick bob")  # free now, as far as anyone can tell
        yield self.turn()
        yield pause(0.8)
        paused.presence.beating.start(self.heartbeat, now=False)  # it goes on...
        bob.send("typed while paused")  # ...with what its clients typed
        yield wait_for(lambda: paused.up, timeout=5)
        yield pause(0.3)
        yield self.turn()
        said = [s for s in alice.seen() if s[0] == "message"]
        self.assertNotIn(("message", "bob", "typed while paused"), said)
        mine = bob.seen()
        self.assertTrue(any("bob was taken" in str(s) for s in mine), mine)
        self.assertEqual([s for s in dave.seen() if "server lost" in str(s)], [])


class HugeMessageTests(ThreeNodes, TestCase):
    """
    A message bigger than Redis lets a subscriber's output buffer hold
    (32 MB by default) disconnects every subscriber.
    """

    privateRedis = True

    @inlineCallbacks
    def test_the_subscribers_come_back_and_nothing_is_lost(self) -> Any:
        alice, bob = yield self.named("alice", "bob")
        self.redis.command(
            "PUBLISH", f"{self.prefix}room:lobby", b"1 " + b"x" * 40_000_000
        )
        for n in range(20):
            alice.send(f"line {n}")
            self.clock.advance(0)
            yield pause(0.02)
        yield wait_for(lambda: all(s.up for s in self.servers), timeout=10)
        yield pause(0.5)
        yield self.turn()
        said = [s for s in bob.seen() if s[0] == "message"]
        self.assertEqual(said, [("message", "alice", f"line {n}") for n in range(20)])
        self.flushLoggedErrors()


class HistoryFirstTests(ThreeNodes, TestCase):
    @inlineCallbacks
    def test_a_newcomer_sees_the_history_before_any_live_line(self) -> Any:
        [bob] = yield self.named("bob")  # node 0
        bob.send("said before")
        yield self.turn()
        node = self.servers[1]
        recent = node.store.recent

        room = node.getRoom("lobby")

        @inlineCallbacks
        def slowRecent(*args: Any) -> Any:
            # bob speaks, and node 1 delivers it, while the newcomer's
            # history is being read
            before = room.lastSeq
            bob.send("said live")
            self.clock.advance(0)
            yield wait_for(lambda: room.lastSeq > before)
            yield deferLater(reactor, 0, lambda: None)
            result = yield recent(*args)
            return result

        node.store.recent = slowRecent  # type: ignore[method-assign]
        carol = LineUser(self.chats[1])
        yield self.turn()
        yield pause(0.1)
        yield self.turn()
        said = [s for s in carol.seen() if s[0] == "message"]
        self.assertEqual(
            said, [("message", "bob", "said before"), ("message", "bob", "said live")]
        )


class RedisTlsTests(TestCase):
    """
    C{rediss://}: TLS to Redis, verifying its certificate.
    """

    def setUp(self) -> None:
        RedisServer.skipUnlessAvailable()
        self.redis = RedisServer(temporary_directory(self), tls=True)
        self.redis.start()
        self.addCleanup(self.redis.stop)

    def serverFor(self, url: str) -> RedisChatServer:
        link = RedisLink(parse_redis_url(url), reactor, maxDelay=0.2, timeout=1)
        server = RedisChatServer("tls", link, reactor, prefix="tls:")
        server.service.startService()
        self.addCleanup(server.service.stopService)
        return server

    @inlineCallbacks
    def test_a_verified_tls_link_shares_rooms(self) -> Any:
        one, two = self.serverFor(self.redis.url), self.serverFor(self.redis.url)
        yield wait_for(lambda: one.up and two.up, timeout=10)
        chats = [ChatOnClock(one), ChatOnClock(two)]
        alice, bob = LineUser(chats[0]), LineUser(chats[1])
        for chat in chats:
            chat.clock.advance(0)
        yield pause(0.2)
        alice.send("over tls")
        chats[0].clock.advance(0)
        yield pause(0.2)
        chats[1].clock.advance(0)
        self.assertIn(("message", "guest1", "over tls"), bob.seen())

    @inlineCallbacks
    def test_an_unknown_certificate_is_refused(self) -> Any:
        url = self.redis.url.partition("?")[0]  # the platform's roots only
        server = self.serverFor(url)
        yield server.whenReady()
        yield pause(1.0)
        self.assertFalse(server.up)
        self.flushLoggedErrors()


class FailedLoginTests(TestCase):
    @inlineCallbacks
    def test_clients_of_a_refused_login_are_told_they_are_alone(self) -> Any:
        RedisServer.skipUnlessAvailable()
        redis = RedisServer(temporary_directory(self), password="right")
        redis.start()
        self.addCleanup(redis.stop)
        wrong = redis.url.replace(":right@", ":wrong@")
        link = RedisLink(parse_redis_url(wrong), reactor, maxDelay=0.2)
        server = RedisChatServer("refused", link, reactor, prefix="refused:")
        server.service.startService()
        self.addCleanup(server.service.stopService)
        yield server.whenReady()
        chat = ChatOnClock(server)
        alice = LineUser(chat)
        chat.clock.advance(0)
        yield deferLater(reactor, 0, lambda: None)
        self.assertIn(UNAVAILABLE, alice.seen())


class RedisOptionTests(TestCase):
    def test_the_deadline_and_the_back_off_come_from_the_options(self) -> None:
        RedisServer.skipUnlessAvailable()
        from sockproto.chat.options import ChatOptions

        options = ChatOptions()
        options.parseOptions(
            ["--redis", "redis://127.0.0.1:1", "--redis-timeout", "1.5"]
            + ["--heartbeat", "2"]
        )
        server = options.buildServer()
        assert isinstance(server, RedisChatServer)
        self.assertEqual(server.link.timeout, 1.5)
        # Reconnecting never waits longer than a heartbeat (and a second of
        # jitter at most), so that after an outage every process is back
        # well before the others would reap it.
        delays = [server.link._policy(attempt) for attempt in range(30)]
        self.assertLessEqual(max(delays), 2 + 1)
