"""
End to end: several C{twistd -n sockproto chat --redis URL} processes, as
users start them, sharing one real redis-server; line clients on each.
"""

import os
import signal
from typing import Any, List

from twisted.internet import reactor, utils
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.trial.unittest import TestCase

from sockproto.testing import (
    LineClient,
    RedisServer,
    TwistdProcess,
    connect_line_client,
    start_twistd,
    temporary_directory,
    twistd_command,
    wait_for,
)

LOCAL = "tcp:0:interface=127.0.0.1"


class SharedChatProcessesTests(TestCase):
    """
    Three chat processes on one Redis serve one chat.
    """

    heartbeat = "0.5"

    def setUp(self) -> None:
        RedisServer.skipUnlessAvailable()
        self.directory = temporary_directory(self)
        self.redis = RedisServer(self.directory)
        self.redis.start()
        self.addCleanup(self.redis.stop)
        self.processes: List[TwistdProcess] = []

    @inlineCallbacks
    def startChat(self, *extra: str) -> Any:
        args = ["chat", "--listen", LOCAL, "--redis", self.redis.url]
        args += ["--heartbeat", self.heartbeat, *extra]
        process = yield start_twistd(args, ["chat"], cwd=self.directory)
        self.processes.append(process)
        self.addCleanup(process.stop, "KILL")
        # Until it reaches Redis, a process serves its clients alone.
        yield wait_for(lambda: b"sharing rooms through Redis" in process.output)
        return process

    @inlineCallbacks
    def join(self, process: TwistdProcess, nick: str) -> Any:
        host, port = process.address("chat")
        client = yield connect_line_client(TCP4ClientEndpoint(reactor, host, port))
        self.addCleanup(client.transport.loseConnection)
        yield client.expect("you are in #lobby")
        client.send(f"/nick {nick}")
        yield client.expect(f"is now known as {nick}")
        return client

    @inlineCallbacks
    def test_three_processes_one_chat_and_a_killed_one_leaves(self) -> Any:
        a = yield self.startChat()
        b = yield self.startChat()
        c = yield self.startChat()
        alice: LineClient = yield self.join(a, "alice")
        bob: LineClient = yield self.join(b, "bob")
        carol: LineClient = yield self.join(c, "carol")
        alice.send("hello from a")
        for client in (alice, bob, carol):
            yield client.expect("<alice> hello from a")
        bob.send("/msg carol psst")
        yield carol.expect("*bob* -> *carol* psst")
        carol.send("/who")
        yield carol.expect("in #lobby (3): alice, bob, carol")
        # SIGKILL: no goodbye.  Its member leaves within 3 heartbeats.
        os.kill(c.transport.pid, signal.SIGKILL)
        started = reactor.seconds()
        line = yield alice.expect("carol left #lobby", timeout=10)
        self.assertEqual(line, "-!- carol left #lobby (server lost)")
        self.assertLess(reactor.seconds() - started, 3 * float(self.heartbeat) + 1)
        bob.send("/who")
        yield bob.expect("in #lobby (2): alice, bob")
        bob.send("/nick carol")
        yield alice.expect("bob is now known as carol")

    @inlineCallbacks
    def test_history_is_shared_and_a_clean_stop_says_goodbye(self) -> Any:
        a = yield self.startChat()
        b = yield self.startChat()
        alice = yield self.join(a, "alice")
        alice.send("one")
        alice.send("two")
        yield alice.expect("<alice> two")
        host, port = b.address("chat")
        bob = yield connect_line_client(TCP4ClientEndpoint(reactor, host, port))
        yield bob.expect("last 2 lines of #lobby")
        yield bob.expect("<alice> one")
        yield bob.expect("<alice> two")
        yield a.stop()
        line = yield bob.expect("alice left #lobby")
        self.assertNotIn("server lost", line)

    @inlineCallbacks
    def test_redis_restarting_keeps_local_chat_then_resumes(self) -> Any:
        a = yield self.startChat()
        b = yield self.startChat()
        alice = yield self.join(a, "alice")
        anna = yield self.join(a, "anna")
        bob = yield self.join(b, "bob")
        self.redis.stop()
        for client in (alice, anna, bob):
            yield client.expect("chat network unavailable")
        alice.send("only on a")
        yield anna.expect("<alice> only on a")
        self.redis.start()
        for client in (alice, anna, bob):
            yield client.expect("chat network back", timeout=20)
        bob.send("across again")
        yield alice.expect("<bob> across again")
        self.assertNotIn("<alice> only on a", bob.lines)
        output = b"".join(p.output for p in self.processes)
        self.assertEqual(output.count(b"redis: lost"), 2, output)
        self.assertNotIn(b"Traceback", output)

    @inlineCallbacks
    def test_an_unreachable_redis_is_one_line_then_local_service(self) -> Any:
        missing = os.path.join(self.directory, "nothing.sock")
        args = ["chat", "--listen", LOCAL, "--redis", f"unix://{missing}"]
        process = yield start_twistd(args, ["chat"], cwd=self.directory)
        self.addCleanup(process.stop, "KILL")
        alice = yield self.join(process, "alice")
        alice.send("hi")
        yield alice.expect("<alice> hi")
        yield process.stop()
        self.assertEqual(process.output.count(b"redis: cannot reach"), 1)
        self.assertNotIn(b"Traceback", process.output)

    @inlineCallbacks
    def test_bad_redis_options_are_one_line_usage_errors(self) -> Any:
        for args, expected in [
            (
                ["--redis", "http://example"],
                "is not a redis://, rediss:// or unix:// URL",
            ),
            (["--redis", "redis://h:x"], "bad port in"),
            (["--redis", "rediss://h?ca=/no/ca.pem"], "no CA file '/no/ca.pem'"),
            (["--redis", "redis://h", "--redis-timeout", "soon"], "--redis-timeout"),
            (["--redis-password-file", "/nonexistent"], "needs --redis"),
            (
                ["--redis", "redis://h", "--redis-password-file", "/nonexistent"],
                "cannot read /nonexistent",
            ),
        ]:
            command = twistd_command() + ["-n", "--pidfile=", "sockproto", "chat"]
            out, err, code = yield utils.getProcessOutputAndValue(
                command[0], command[1:] + args, env=os.environ, path=self.directory
            )
            self.assertEqual(code, 1)
            self.assertEqual(err.decode().count("\n"), 1, err)
            self.assertIn(expected, err.decode())
            self.assertNotIn(b"Traceback", out + err)

    @inlineCallbacks
    def test_one_order_and_one_winner_of_each_nick_race_across_processes(self) -> Any:
        a = yield self.startChat("--rate-limit", "0")
        b = yield self.startChat("--rate-limit", "0")
        alice = yield self.join(a, "alice")
        bob = yield self.join(b, "bob")
        carol = yield self.join(b, "carol")
        for n in range(20):
            for client in (alice, bob, carol):
                client.send(f"line {n}")
        clients = (alice, bob, carol)

        def received() -> List[List[str]]:
            return [[line for line in c.lines if "> line " in line] for c in clients]

        yield wait_for(lambda: all(len(lines) == 60 for lines in received()))
        orders = received()
        self.assertEqual(orders[1], orders[0])
        self.assertEqual(orders[2], orders[0])
        for round in range(100):
            nick = f"race{round}"
            alice.send(f"/nick {nick}")
            bob.send(f"/nick {nick}")
            won = yield carol.expect(f"is now known as {nick}")
            winner, loser = (
                (alice, bob) if won.startswith("-!- alice") else (bob, alice)
            )
            yield loser.expect(f"-!- error: nickname {nick} is taken")
            old = "alice" if winner is alice else "bob"
            winner.send(f"/nick {old}")
            yield carol.expect(f"{nick} is now known as {old}")
        joined = "\n".join(carol.lines)
        self.assertEqual(joined.count("is now known as race"), 100)
