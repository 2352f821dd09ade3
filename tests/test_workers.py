"""
C{--workers N} end to end: C{twistd -n sockproto ... --workers 2} as users
run it, over loopback.
"""

import os
import re
import signal
from typing import Any, Callable, Set

from twisted.internet import reactor, utils
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.trial.unittest import SkipTest, TestCase

from sockproto.testing import (
    REDIS_MISSING,
    RedisServer,
    TwistdProcess,
    connect_line_client,
    connect_websocket,
    make_certificate,
    start_twistd,
    temporary_directory,
    tls_endpoint_description,
    twistd_command,
    wait_for,
)

LOCAL = "tcp:0:interface=127.0.0.1"
_WORKER = re.compile(rb"\[worker (\d+)\] \w+ connection from 127\.0\.0\.1:(\d+)\n")


def workers_serving(process: TwistdProcess) -> Set[int]:
    """
    The workers the parent's log names as having taken a connection.
    """
    return {int(m.group(1)) for m in _WORKER.finditer(process.output)}


def worker_pid(process: TwistdProcess, number: int) -> int:
    """
    The process id of worker C{number}, as it logged it.
    """
    pids = re.findall(rb"\[worker %d\] pid (\d+)" % number, process.output)
    return int(pids[-1])


def line_client(host: str, port: int, number: int) -> Any:
    return connect_line_client(TCP4ClientEndpoint(reactor, host, port))


@inlineCallbacks
def browser(host: str, port: int, number: int) -> Any:
    """
    A browser's WebSocket, once the chat greeted it.
    """
    endpoint = TCP4ClientEndpoint(reactor, host, port)
    client = yield connect_websocket(endpoint, host=f"{host}:{port}")
    yield client.expect("you")
    return client


@inlineCallbacks
def irc_client(host: str, port: int, number: int) -> Any:
    """
    An IRC client called irc<number>, once it joined #lobby.
    """
    client = yield connect_line_client(TCP4ClientEndpoint(reactor, host, port))
    client.send(f"NICK irc{number}\r\nUSER u 0 * :u\r\nJOIN #lobby")
    yield client.expect("JOIN #lobby")
    return client


class WorkersTests(TestCase):
    timeout = 90

    def setUp(self) -> None:
        self.directory = temporary_directory(self)

    @inlineCallbacks
    def start(self, *args: str) -> Any:
        process = yield start_twistd(list(args), [args[0]], cwd=self.directory)
        self.addCleanup(process.stop, "KILL")
        started = re.compile(rb"\[worker \d\] sockproto starting")
        yield wait_for(lambda: len(started.findall(process.output)) == 2)
        return process

    @inlineCallbacks
    def connectUntilBothWorkersServe(
        self,
        process: TwistdProcess,
        service: str,
        connect: Callable[[str, int, int], Any] = line_client,
    ) -> Any:
        """
        Connect two clients to C{service}'s port, with C{connect(host, port,
        number)}, one served by each worker; return them.

        The kernel hands a new connection to whichever worker takes it
        first, and on two cores the same one can win every time; so while
        the second client connects, the worker that took the first is
        paused (SIGSTOP), and the other one must take it.
        """
        host, port = process.address(service)
        first = yield connect(host, port, 0)
        self.addCleanup(first.transport.loseConnection)
        yield wait_for(lambda: len(workers_serving(process)) == 1)
        (busy,) = workers_serving(process)
        pid = worker_pid(process, busy)
        os.kill(pid, signal.SIGSTOP)
        try:
            second = yield connect(host, port, 1)
            self.addCleanup(second.transport.loseConnection)
            yield wait_for(lambda: workers_serving(process) == {1, 2})
        finally:
            os.kill(pid, signal.SIGCONT)
        return [first, second]

    @inlineCallbacks
    def test_echo_connections_spread_over_two_workers(self) -> Any:
        process = yield self.start("echo", "--workers", "2", "--listen", LOCAL)
        clients = yield self.connectUntilBothWorkersServe(process, "echo")
        for client in clients[-2:]:
            client.send("ping")
            yield client.expect("ping")
        status = yield process.stop()
        self.assertEqual(status, 0)
        self.assertEqual(process.output.count(b"Main loop terminated"), 3)
        self.assertNotIn(b"Traceback", process.output + process.errors)

    @inlineCallbacks
    def test_a_killed_worker_is_started_again(self) -> Any:
        process = yield self.start("echo", "--workers", "2", "--listen", LOCAL)
        pids = [int(p) for p in re.findall(rb"\[worker 1\] pid (\d+)", process.output)]
        self.assertEqual(len(pids), 1, process.output)
        os.kill(pids[0], signal.SIGKILL)
        yield wait_for(lambda: b"worker 1 exited" in process.output)
        yield wait_for(
            lambda: len(re.findall(rb"\[worker 1\] pid", process.output)) == 2
        )
        host, port = process.address("echo")
        client = yield connect_line_client(TCP4ClientEndpoint(reactor, host, port))
        self.addCleanup(client.transport.loseConnection)
        client.send("still here")
        yield client.expect("still here")

    @inlineCallbacks
    def test_coucou_messages_from_either_worker_are_printed(self) -> Any:
        process = yield self.start("coucou", "--workers", "2", "--listen", LOCAL)
        clients = yield self.connectUntilBothWorkersServe(process, "coucou")
        for client in clients:
            client.send("coucou")
        yield wait_for(lambda: process.output.count(b"] coucou") >= len(clients))

    @inlineCallbacks
    def test_chat_workers_share_rooms_through_a_private_redis(self) -> Any:
        if not RedisServer.available():
            raise SkipTest(REDIS_MISSING)
        process = yield self.start("chat", "--workers", "2", "--listen", LOCAL)
        self.assertIn(b"started a private redis-server", process.output)
        clients = yield self.connectUntilBothWorkersServe(process, "chat")
        first, last = clients[0], clients[-1]  # on two workers
        yield first.expect("you are in #lobby")
        yield last.expect("you are in #lobby")
        first.send("/nick alice")
        yield last.expect("is now known as alice")
        first.send("hello from one worker")
        yield last.expect("<alice> hello from one worker")
        yield process.stop()
        yield last.expect("-!- server shutting down")
        folders = re.findall(rb"unix://(\S+)/redis.sock", process.output)
        self.assertFalse(os.path.exists(folders[0].decode()))
        self.assertNotIn(b"Traceback", process.output + process.errors)

    @inlineCallbacks
    def test_the_web_page_is_served_by_the_workers_in_the_same_rooms(self) -> Any:
        if not RedisServer.available():
            raise SkipTest(REDIS_MISSING)
        process = yield self.start(
            *("chat", "--workers", "2", "--listen", LOCAL, "--web", LOCAL),
        )
        self.assertIn(b"web in 2 workers", process.output)
        browsers = yield self.connectUntilBothWorkersServe(process, "web", browser)
        first, last = browsers[0], browsers[-1]  # on two workers
        first.say("/nick webby")
        yield last.expect("nick", timeout=10)
        first.say("hello across workers")
        said = yield last.expect("message", "hello across workers")
        self.assertEqual(said["nick"], "webby")
        yield process.stop()
        yield last.expect("notice", "server shutting down")
        code = yield last.closed
        self.assertEqual(code, 1001)

    @inlineCallbacks
    def test_irc_is_served_by_the_workers_in_the_same_rooms(self) -> Any:
        if not RedisServer.available():
            raise SkipTest(REDIS_MISSING)
        process = yield self.start(
            *("chat", "--workers", "2", "--listen", LOCAL, "--irc", LOCAL),
        )
        clients = yield self.connectUntilBothWorkersServe(process, "irc", irc_client)
        first, last = clients[0], clients[-1]  # on two workers
        first.send("PRIVMSG #lobby :hello across workers")
        yield last.expect(":irc0!irc0@sockproto PRIVMSG #lobby :hello across workers")
        yield process.stop()
        yield last.expect("ERROR :Closing link: server shutting down")

    @inlineCallbacks
    def test_usage_errors_of_workers_are_one_line(self) -> Any:
        path = os.path.dirname(twistd_command()[0])  # no redis-server here
        tls = tls_endpoint_description(*make_certificate(self.directory))
        cases = [
            (
                ["echo", "--workers", "2", "--listen", tls],
                "--workers shares tcp:, tcp6: and unix: ports",
                os.environ["PATH"],
            ),
            (
                ["--workers", "0"],
                "--workers takes a whole number, at least 1",
                os.environ["PATH"],
            ),
            (["--workers", "2", "echo"], "--workers before echo", os.environ["PATH"]),
            (["chat", "--workers", "2"], "chat with --workers needs a broker", path),
        ]
        for args, expected, searchPath in cases:
            command = twistd_command() + ["-n", "--pidfile=", "sockproto", *args]
            env = dict(os.environ, PATH=searchPath)
            out, err, code = yield utils.getProcessOutputAndValue(
                command[0], command[1:], env=env, path=self.directory
            )
            self.assertEqual(code, 1, (args, out, err))
            self.assertEqual(err.decode().count("\n"), 1, err)
            self.assertIn(expected, err.decode())
            self.assertNotIn(b"Traceback", out + err)
