"""
The chat shared through a real redis-server: the behaviour suite with
users spread over two processes' worth of back ends, and the guarantees
of the shared back end (one order per room, unique nicknames, presence
after a process's loss, Redis going away and coming back).

One redis-server runs per test class, on a UNIX socket in a temporary
folder; each test uses its own key prefix.
"""

import itertools
import os
from typing import Any, List

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import TestCase

from sockproto.chat import ChatFactory
from sockproto.chat.backends.redis.resp import RedisLink, parse_redis_url
from sockproto.chat.backends.redis.server import RedisChatServer
from sockproto.chat.backends.redis.wire import encode_events
from sockproto.chat.events import ChatEvent
from sockproto.testing import (
    ChatOnClock,
    RedisServer,
    settle,
    temporary_directory,
    wait_for,
)
from sockproto.testing.behaviour import (
    BrowserUser,
    ChatBehaviour,
    IrcUser,
    LineUser,
    SessionUser,
    User,
)

from .support import IrcClient, Member, module_redis, need_prometheus_client, scrape

_prefixes = itertools.count(1)


class RedisFixture:
    """
    A redis-server for the test module, and shared chat servers on it.
    """

    heartbeat = 5.0
    linkTimeout = 3.0
    """Seconds a command to Redis may wait for its reply."""
    privateRedis = False
    """Whether each test gets a redis-server of its own (to stop it)."""

    def setUp(self) -> Any:
        RedisServer.skipUnlessAvailable()
        if self.privateRedis:
            self.redis = RedisServer(temporary_directory(self))
            self.redis.start()
            self.addCleanup(self.redis.stop)  # type: ignore[attr-defined]
        else:
            self.redis = module_redis()
        return super().setUp()  # type: ignore[misc]

    def newPrefix(self) -> str:
        self.prefix = f"test{next(_prefixes)}:"
        return self.prefix

    def sharedServer(self, name: str = "shared", **kwargs: Any) -> RedisChatServer:
        link = RedisLink(
            parse_redis_url(self.redis.url),
            reactor,
            maxDelay=0.2,
            timeout=self.linkTimeout,
        )
        kwargs.setdefault("heartbeat", self.heartbeat)
        server = RedisChatServer(name, link, reactor, prefix=self.prefix, **kwargs)
        server.service.startService()
        self.addCleanup(server.service.stopService)  # type: ignore[attr-defined]
        return server


class SharedBehaviour(RedisFixture, ChatBehaviour):
    """
    The behaviour suite on the Redis back end, with users on C{nodes}
    back ends (as if in that many processes), in turn.
    """

    nodes = 2

    def newServer(self, clock: Clock) -> Any:
        self.newPrefix()
        self.servers = [self.sharedServer(f"node{i}") for i in range(self.nodes)]
        self._next = itertools.cycle(range(self.nodes))
        return self.servers[0]

    def setUp(self) -> Any:
        super().setUp()
        return wait_for(lambda: all(server.up for server in self.servers))

    def turn(self) -> Any:
        self.clock.advance(0)
        return settle(self.servers)


class LineFrontEndOnTwoSharedNodesTests(SharedBehaviour, TestCase):
    """
    The line protocol, with users alternating between two back ends that
    share one Redis: everything behaves as on one server.
    """

    def setUp(self) -> Any:
        d = super().setUp()
        self.chats = [ChatOnClock(server, self.clock) for server in self.servers]
        return d

    def connect(self) -> User:
        return LineUser(self.chats[next(self._next)])


class WebFrontEndOnTwoSharedNodesTests(SharedBehaviour, TestCase):
    """
    The web page's WebSocket, with users alternating between two back
    ends that share one Redis.
    """

    def setUp(self) -> Any:
        d = super().setUp()
        self.chats = [ChatOnClock(server, self.clock) for server in self.servers]
        return d

    def connect(self) -> User:
        return BrowserUser(self.chats[next(self._next)])


class IrcFrontEndOnTwoSharedNodesTests(SharedBehaviour, TestCase):
    """
    IRC clients, alternating between two back ends that share one Redis.
    """

    def setUp(self) -> Any:
        d = super().setUp()
        self.chats = [ChatOnClock(server, self.clock) for server in self.servers]
        return d

    def connect(self) -> User:
        return IrcUser(self.chats[next(self._next)])


class SessionOnSharedNodeTests(SharedBehaviour, TestCase):
    """
    A bare session on one Redis back end.
    """

    nodes = 1

    def connect(self) -> User:
        return SessionUser(self.servers[0])


class ThreeNodes(RedisFixture):
    """
    Three shared back ends on one Redis, each with its line front end.
    """

    heartbeat = 0.25

    @inlineCallbacks
    def setUp(self) -> Any:
        yield super().setUp()
        self.newPrefix()
        self.clock = Clock()
        self.servers: List[RedisChatServer] = []
        self.chats: List[ChatOnClock] = []
        for _ in range(3):
            self.addNode()
        yield wait_for(lambda: all(server.up for server in self.servers))

    def addNode(self) -> ChatOnClock:
        server = self.sharedServer(f"node{len(self.servers)}")
        self.servers.append(server)
        chat = ChatOnClock(server, self.clock)
        self.chats.append(chat)
        return chat

    def turn(self) -> Any:
        self.clock.advance(0)
        return settle([s for s in self.servers if s.link.running])

    @inlineCallbacks
    def named(self, *nicks: str) -> Any:
        users = []
        for i, nick in enumerate(nicks):
            users.append(LineUser(self.chats[i % len(self.chats)]))
            yield self.turn()
            users[-1].send(f"/nick {nick}")
            yield self.turn()
        for user in users:
            user.seen()
        return users


class SharedGuaranteeTests(ThreeNodes, TestCase):
    """
    What the shared back end promises beyond the behaviour suite.
    """

    @inlineCallbacks
    def test_every_member_on_every_node_sees_one_order(self) -> Any:
        users = yield self.named("alice", "bob", "carol")
        for round in range(20):
            for user in users:
                user.send(f"line {round}")
        yield self.turn()
        orders = [[s for s in user.seen() if s[0] == "message"] for user in users]
        self.assertEqual(len(orders[0]), 60)
        self.assertEqual(orders[1], orders[0])
        self.assertEqual(orders[2], orders[0])
        for nick in ("alice", "bob", "carol"):
            mine = [text for kind, who, text in orders[0] if who == nick]
            self.assertEqual(mine, [f"line {r}" for r in range(20)])

    @inlineCallbacks
    def test_two_nodes_racing_for_a_nickname_exactly_one_wins(self) -> Any:
        a, b = yield self.named("a", "b")  # on two nodes
        for round in range(100):
            nick = f"race{round}"
            a.send(f"/nick {nick}")
            b.send(f"/nick {nick}")
            yield self.turn()
            seenA, seenB = a.seen(), b.seen()
            wins = [s for s in seenA if s[0] == "nick" and s[2] == nick]
            refusals = [s for s in seenA + seenB if s[0] == "error"]
            self.assertEqual(len(wins), 1, (seenA, seenB))
            self.assertEqual(len(refusals), 1, (seenA, seenB))
            self.assertIn(f"nickname {nick} is taken", refusals[0][1])
            old = wins[0][1]
            (a if old == "a" else b).send(f"/nick {old}")
            yield self.turn()
            a.seen(), b.seen()

    @inlineCallbacks
    def test_commands_typed_before_the_join_completes_keep_their_order(self) -> Any:
        [bob] = yield self.named("bob")
        alice = LineUser(self.chats[1])
        alice.send("/nick alice")
        alice.send("hello")
        yield self.turn()
        expected = [
            ("join", "guest2", "lobby"),
            ("nick", "guest2", "alice"),
            ("message", "alice", "hello"),
        ]
        self.assertEqual(bob.seen(), expected)
        self.assertEqual([s for s in alice.seen() if s[0] != "notice"], expected)
        alice.send("/who")
        yield self.turn()
        self.assertEqual(alice.seen(), [("notice", "in #lobby (2): bob, alice")])

    @inlineCallbacks
    def test_a_nick_change_while_someone_joins_reaches_them(self) -> Any:
        [bob] = yield self.named("bob")  # on node 0
        room = self.servers[1].getRoom("lobby")
        yield wait_for(lambda: room.synced.called)
        asked = room.nicks

        @inlineCallbacks
        def askThenRename() -> Any:
            # bob is renamed, and node 1 hears of it, just after node 1
            # read who is in the room for alice
            nicks = yield asked()
            bob.send("/nick robert")
            yield self.turn()
            return nicks

        room.nicks = askThenRename  # type: ignore[method-assign]
        alice = LineUser(self.chats[1])
        seen: List[Any] = []

        def greeted() -> List[str]:
            return [s[1] for s in seen if s[1].startswith("you are in")]

        yield wait_for(lambda: seen.extend(alice.seen()) or greeted())
        yield self.turn()
        seen.extend(alice.seen())
        [greeting] = greeted()
        known = greeting.partition(" with ")[2].split(", ")
        for event in seen:
            if event[0] == "nick":
                known = [event[2] if n == event[1] else n for n in known]
        self.assertEqual(known, ["robert"], seen)

    @inlineCallbacks
    def test_leaving_before_the_join_completes_leaves_no_member_behind(self) -> Any:
        [bob] = yield self.named("bob")  # on node 0
        room = self.servers[1].getRoom("games")
        self.assertFalse(room.synced.called)
        ghost = Member("ghost")
        joined = room.join(ghost)
        yield room.leave(ghost, "gone")
        history = yield joined
        yield self.turn()
        self.assertEqual((history, room.members), ([], {}))
        nicks = yield room.nicks()
        self.assertEqual(nicks, [])
        self.assertEqual(bob.seen(), [])

    @inlineCallbacks
    def test_a_private_message_reaches_a_nick_on_another_node(self) -> Any:
        alice, bob = yield self.named("alice", "bob")
        alice.send("/msg bob psst")
        yield self.turn()
        self.assertEqual(bob.seen(), [("private", "alice", "bob", "psst")])
        self.assertEqual(alice.seen(), [("private", "alice", "bob", "psst")])

    @inlineCallbacks
    def test_who_and_rooms_count_every_node(self) -> Any:
        alice, bob, carol = yield self.named("alice", "bob", "carol")
        alice.send("/who")
        carol.send("/join games")
        yield self.turn()
        [(_, who)] = [s for s in alice.seen() if s[0] == "notice"]
        self.assertIn("alice, bob, carol", who)
        bob.send("/rooms")
        yield self.turn()
        [(_, rooms)] = [s for s in bob.seen() if s[0] == "notice"]
        self.assertIn("#games (1)", rooms)
        self.assertIn("#lobby (2)", rooms)

    @inlineCallbacks
    def test_a_killed_node_s_members_leave_within_three_heartbeats(self) -> Any:
        alice, bob = yield self.named("alice", "bob")  # bob on node 1
        lost = self.servers[1]
        lost.presence.beating.stop()  # as if killed: no goodbye, no more heartbeats
        yield lost.link.stopService()
        started = reactor.seconds()
        seen: List[Any] = []
        yield wait_for(lambda: seen.extend(alice.seen()) or seen)
        elapsed = reactor.seconds() - started
        self.assertLess(elapsed, 3 * self.heartbeat + 0.5)
        self.assertEqual(seen, [("leave", "bob", "lobby", "server lost")])
        alice.send("/who")
        alice.send("/nick bob")
        yield self.turn()
        seen = alice.seen()
        self.assertEqual(seen[0], ("notice", "in #lobby (1): alice"))
        self.assertEqual(seen[1], ("nick", "alice", "bob"))

    @inlineCallbacks
    def test_malformed_messages_on_a_room_channel_are_dropped(self) -> Any:
        alice, bob = yield self.named("alice", "bob")
        channel = f"{self.prefix}room:lobby"
        self.redis.command("PUBLISH", channel, b"99999 not json")
        self.redis.command("PUBLISH", channel, b"x {}")
        big = '{"v":1,"e":[["message","lobby","mallory","' + "x" * 9000 + '",""]]}'
        self.redis.command("PUBLISH", channel, b"1 " + big.encode())
        forged = encode_events([ChatEvent("message", "lobby", "mallory", "hi")])
        self.redis.command("PUBLISH", channel, b"99999 " + forged)
        self.redis.command("PUBLISH", channel, str(2**70).encode() + b" " + forged)
        alice.send("still fine")
        yield self.turn()
        self.assertEqual(bob.seen(), [("message", "alice", "still fine")])
        errors = self.flushLoggedErrors()
        self.assertEqual(errors, [])


class RedisRestartTests(ThreeNodes, TestCase):
    """
    Redis stops and starts again under three nodes.
    """

    privateRedis = True

    @inlineCallbacks
    def test_redis_going_away_keeps_local_service_then_resumes(self) -> Any:
        alice, bob, carol = yield self.named("alice", "bob", "carol")
        dave = LineUser(self.chats[0])  # alice's node
        yield self.turn()
        dave.send("/nick dave")
        yield self.turn()
        for user in (alice, bob, carol, dave):
            user.seen()
        self.redis.stop()
        yield wait_for(lambda: not any(s.up for s in self.servers))
        yield deferLater(reactor, 0, lambda: None)
        unavailable = ("notice", UNAVAILABLE_TEXT)
        for user in (alice, bob, carol, dave):
            self.assertEqual(user.seen(), [unavailable])
        alice.send("only here")
        self.clock.advance(0)
        yield deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(dave.seen(), [("message", "alice", "only here")])
        self.assertEqual(bob.seen(), [])
        self.redis.start()
        yield wait_for(lambda: all(s.up for s in self.servers), timeout=15)
        yield self.turn()
        for user in (alice, bob, carol, dave):
            self.assertIn(("notice", BACK_TEXT), user.seen())
        bob.send("across again")
        yield self.turn()
        for user in (alice, carol, dave):
            self.assertEqual(user.seen(), [("message", "bob", "across again")])

    @inlineCallbacks
    def test_while_redis_is_away_a_newcomer_sees_the_whole_room_s_history(
        self,
    ) -> Any:
        alice, bob, carol = yield self.named("alice", "bob", "carol")
        alice.send("from alice's node")  # node 0
        bob.send("from bob's node")  # node 1
        yield self.turn()
        self.redis.stop()
        yield wait_for(lambda: not any(s.up for s in self.servers))
        yield deferLater(reactor, 0, lambda: None)
        alice.send("said alone")
        self.clock.advance(0)
        dave = LineUser(self.chats[0])  # alice's node, while Redis is away
        self.clock.advance(0)
        yield deferLater(reactor, 0.01, lambda: None)
        history = [s for s in dave.seen() if s[0] == "message"]
        self.assertEqual(
            history,
            [
                ("message", "alice", "from alice's node"),
                ("message", "bob", "from bob's node"),
                ("message", "alice", "said alone"),
            ],
        )


UNAVAILABLE_TEXT = "chat network unavailable: only people on this server see your lines"
BACK_TEXT = "chat network back: everyone in your room sees your lines again"


class SharedHistoryTests(RedisFixture, TestCase):
    """
    History and backfill come from the room's stream in Redis.
    """

    @inlineCallbacks
    def test_a_gap_in_numbers_is_filled_from_the_stream(self) -> Any:
        self.newPrefix()
        clock = Clock()
        server = self.sharedServer()
        yield wait_for(lambda: server.up)
        chat = ChatOnClock(server, clock)
        alice = LineUser(chat)
        clock.advance(0)
        yield settle([server])
        alice.seen()
        room = server.getRoom("lobby")
        # Lines published while this process was not listening:
        server.link.unsubscribe(f"{self.prefix}room:lobby".encode())
        yield settle([server])
        for text in ("one", "two"):
            event = ChatEvent("message", "lobby", "bob", text)
            yield server.store.publish("lobby", encode_events([event]))
        yield server.link.subscribe(f"{self.prefix}room:lobby".encode())
        three = ChatEvent("message", "lobby", "bob", "3")
        yield server.store.publish("lobby", encode_events([three]))
        yield settle([server])
        self.assertEqual(
            [s for s in alice.seen()],
            [
                ("message", "bob", "one"),
                ("message", "bob", "two"),
                ("message", "bob", "3"),
            ],
        )
        seq = self.redis.command("GET", f"{self.prefix}room:lobby:seq")
        self.assertEqual(room.lastSeq, int(seq))


class SharedFactoryTests(RedisFixture, TestCase):
    def test_the_factory_runs_the_link_with_the_ports(self) -> None:
        self.newPrefix()
        server = self.sharedServer()
        factory = ChatFactory(server)
        self.assertEqual(factory.supportServices(), [server.service])

    @inlineCallbacks
    def test_ready_once_it_shares_rooms(self) -> Any:
        self.newPrefix()
        server = self.sharedServer()
        yield server.service.whenReady()
        self.assertTrue(server.up)
        self.assertTrue(server.whenReady().called)

    @inlineCallbacks
    def test_ready_at_once_when_redis_cannot_be_reached(self) -> Any:
        missing = os.path.join(temporary_directory(self), "no.sock")
        link = RedisLink(parse_redis_url(f"unix://{missing}"), reactor, maxDelay=0.2)
        server = RedisChatServer("alone", link, reactor)
        server.startupWait = 60.0
        server.service.startService()
        self.addCleanup(server.service.stopService)
        yield server.whenReady()
        self.assertFalse(server.up)

    @inlineCallbacks
    def test_a_client_arriving_while_redis_is_unreachable_is_told(self) -> Any:
        missing = os.path.join(temporary_directory(self), "no.sock")
        link = RedisLink(parse_redis_url(f"unix://{missing}"), reactor, maxDelay=0.2)
        server = RedisChatServer("alone", link, reactor)
        server.service.startService()
        self.addCleanup(server.service.stopService)
        yield server.whenReady()
        chat = ChatOnClock(server)
        alice = LineUser(chat)
        chat.clock.advance(0)
        yield deferLater(reactor, 0, lambda: None)
        self.assertIn(("notice", UNAVAILABLE_TEXT), alice.seen())
        alice.send("/join #games")
        chat.clock.advance(0)
        yield deferLater(reactor, 0, lambda: None)
        self.assertNotIn(("notice", UNAVAILABLE_TEXT), alice.seen())  # once

    def test_ready_after_waiting_for_a_silent_redis(self) -> None:
        clock = MemoryReactorClock()  # connection attempts that never end
        link = RedisLink(parse_redis_url("redis://127.0.0.1:6379"), clock)
        server = RedisChatServer("waiting", link, clock)
        server.service.startService()
        self.addCleanup(server.service.stopService)
        ready = server.whenReady()
        clock.advance(server.startupWait - 0.1)
        self.assertNoResult(ready)
        clock.advance(0.1)
        self.assertIsNone(self.successResultOf(ready))

    @inlineCallbacks
    def test_metrics_show_the_broker_link_and_its_lag(self) -> Any:
        need_prometheus_client()
        self.newPrefix()
        server = self.sharedServer()
        yield wait_for(lambda: server.up)
        samples = scrape(ChatFactory(server))
        self.assertEqual(samples[("sockproto_chat_broker_up", ())], 1)
        self.assertGreater(samples[("sockproto_chat_broker_lag_seconds", ())], 0)
        server.presence.linkDown()  # as when Redis goes away
        samples = scrape(ChatFactory(server))
        self.assertEqual(samples[("sockproto_chat_broker_up", ())], 0)


class RedisPasswordTests(RedisFixture, TestCase):
    """
    A Redis that requires a password.
    """

    @inlineCallbacks
    def test_the_password_in_the_url_logs_in_and_a_wrong_one_is_one_line(self) -> Any:
        self.redis = RedisServer(temporary_directory(self), password="s3cret")
        self.redis.start()
        self.addCleanup(self.redis.stop)
        self.newPrefix()
        server = self.sharedServer()
        yield wait_for(lambda: server.up)
        wrong = RedisServer(self.redis.directory, password="nope")
        link = RedisLink(parse_redis_url(wrong.url), reactor, maxDelay=0.2)
        link.startService()
        self.addCleanup(link.stopService)
        yield deferLater(reactor, 1.0, lambda: None)
        self.assertFalse(link.up)
        self.assertGreater(link._rejections, 1)  # it kept trying, backing off


class ReconnectionCollisionTests(ThreeNodes, TestCase):
    privateRedis = True

    @inlineCallbacks
    def test_a_nickname_taken_twice_while_redis_was_away_goes_to_one(self) -> Any:
        alice, bob, carol = yield self.named("alice", "bob", "carol")
        self.redis.stop()
        yield wait_for(lambda: not any(s.up for s in self.servers))
        alice.send("/nick zed")  # each node alone says yes
        bob.send("/nick zed")
        yield deferLater(reactor, 0.05, lambda: None)
        self.redis.start()
        yield wait_for(lambda: all(s.up for s in self.servers), timeout=15)
        yield self.turn()
        renamed = [
            seen
            for user in (alice, bob)
            for seen in user.seen()
            if seen[0] == "notice" and "zed was taken on another server" in seen[1]
        ]
        self.assertEqual(len(renamed), 1, renamed)
        self.assertRegex(renamed[0][1], r"you are now known as guest\d+: ")
        carol.send("/who")
        yield self.turn()
        [who] = [s for s in carol.seen() if s[0] == "notice" and "in #lobby" in s[1]]
        self.assertIn("zed", who[1])
        self.assertRegex(who[1], r"guest\d+")


class IrcOnSharedNodesTests(ThreeNodes, TestCase):
    """
    An IRC user in two rooms at once on one node; line users on another.
    """

    @inlineCallbacks
    def test_an_irc_user_in_two_rooms_across_nodes(self) -> Any:

        irc = IrcClient(self.chats[0], 1)
        irc.send(b"NICK ircy\r\nUSER i 0 * :i\r\n")
        yield self.turn()
        irc.send(b"JOIN #lobby,#dev\r\n")
        yield self.turn()
        lobby, lobbyIO = self.chats[1].join()
        dev, devIO = self.chats[1].join()
        yield self.turn()
        self.chats[1].send(dev, "/join #dev")
        yield self.turn()
        irc.lines()
        self.chats[1].send(dev, "hi in dev")
        yield self.turn()
        said = f":{dev.nick}!{dev.nick}@sockproto PRIVMSG #dev :hi in dev"
        self.assertIn(said, irc.lines())
        irc.send(b"PRIVMSG #lobby :hello lobby\r\n")
        yield self.turn()
        self.assertIn("<ircy> hello lobby", lobbyIO.value().decode())
        self.assertNotIn("hello lobby", devIO.value().decode())
        other = IrcClient(self.chats[2], 2)  # in both rooms too, on node 2
        other.send(b"NICK othy\r\nUSER o 0 * :o\r\nJOIN #lobby,#dev\r\n")
        yield self.turn()
        other.lines()
        irc.send(b"QUIT :gone\r\n")
        irc.protocol.connectionLost()
        yield self.turn()
        self.assertEqual(other.lines(), [":ircy!ircy@sockproto QUIT :Quit: gone"])
        self.assertIn("ircy left #lobby (Quit: gone)", lobbyIO.value().decode())
        self.assertIn("ircy left #dev (Quit: gone)", devIO.value().decode())
        who = yield self.servers[2].room("dev")
        nicks = yield who.nicks()
        self.assertEqual(nicks, [dev.nick, "othy"])
