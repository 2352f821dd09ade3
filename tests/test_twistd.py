"""
End-to-end: C{twistd -n sockproto ...} in a child process, as a user runs it.
"""

import os
import socket
import sys
from typing import Any

from twisted.internet import reactor, utils
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody

from sockproto.coucou import send_message
from sockproto.testing import (
    LineClient,
    connect_line_client,
    start_twistd,
    temporary_directory,
    twistd_command,
    wait_for,
)

from .support import ChatProcess, sockproto_command

LOCAL = "tcp:0:interface=127.0.0.1"


class TwistdTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def start(self, *args: str, services: Any = ()) -> Any:
        process = yield start_twistd(list(args), services, cwd=self.mktemp_dir())
        self.addCleanup(
            lambda: process.stop("KILL") if not process.ended.called else None
        )
        return process

    def mktemp_dir(self) -> str:
        return temporary_directory(self)

    @inlineCallbacks
    def test_all_in_one_serves_every_service_and_stops_on_sigterm(self) -> Any:
        process = yield self.start(
            *("--echo", LOCAL, "--coucou", LOCAL, "--chat", LOCAL),
            *("--web", LOCAL, "--irc", LOCAL),
            services=["echo", "coucou", "chat", "web", "irc"],
        )
        host, port = process.address("web")
        page = yield Agent(reactor).request(b"GET", f"http://{host}:{port}/".encode())
        self.assertEqual(page.code, 200)
        self.assertIn(b"sockproto chat", (yield readBody(page)))
        host, port = process.address("echo")
        client = yield TCP4ClientEndpoint(reactor, host, port).connect(
            Factory.forProtocol(LineClient)
        )
        client.send("ping")
        self.assertEqual((yield client.expect("ping")), "ping")

        host, port = process.address("coucou")
        yield send_message(
            TCP4ClientEndpoint(reactor, host, port), b"coucou", timeout=10
        )

        status = yield process.stop("TERM")
        yield client.closed
        self.assertEqual(status, 0)
        lines = process.output.decode().splitlines()
        [printed] = [line for line in lines if line.endswith("] coucou")]
        self.assertRegex(printed, r"^\[127\.0\.0\.1:\d+\] coucou$")
        self.assertIn(f"host {socket.gethostname()}", process.output.decode())
        self.assertIn("received SIGTERM, shutting down", process.output.decode())
        self.assertIn("Server Shut Down.", process.output.decode())
        self.assertNotIn(b"Traceback", process.output + process.errors)

    @inlineCallbacks
    def test_one_service_on_several_endpoints_ipv4_and_ipv6(self) -> Any:
        process = yield self.start(
            "echo",
            "--listen",
            LOCAL,
            "--listen",
            "tcp6:0:interface=\\:\\:1",
            services=["echo"],
        )
        while len(process.addresses["echo"]) < 2:
            yield client_turn()
        [(host4, port4), (host6, port6)] = sorted(process.addresses["echo"], key=len)
        for endpoint in [
            TCP4ClientEndpoint(reactor, "127.0.0.1", port4),
            TCP6ClientEndpoint(reactor, "::1", port6),
        ]:
            client = yield endpoint.connect(Factory.forProtocol(LineClient))
            client.send("hello")
            yield client.expect("hello")
            client.transport.loseConnection()
        self.assertEqual((yield process.stop("INT")), 0)

    @inlineCallbacks
    def test_port_in_use_is_one_line_and_exit_1(self) -> Any:
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        out, err, code = yield utils.getProcessOutputAndValue(
            twistd_command()[0],
            twistd_command()[1:]
            + [
                "-n",
                "--pidfile=",
                "sockproto",
                "echo",
                "--listen",
                f"tcp:{port}:interface=127.0.0.1",
            ],
            env=os.environ,
            path=self.mktemp_dir(),
        )
        self.assertEqual(code, 1)
        self.assertEqual(
            err.decode(),
            f"sockproto: echo cannot listen on tcp:{port}:interface=127.0.0.1:"
            " Address already in use\n",
        )
        self.assertNotIn(b"Traceback", out + err)
        self.assertNotIn(b"cannot listen", out)  # said once, not twice

    @inlineCallbacks
    def test_bad_endpoint_and_unknown_option_are_one_line(self) -> Any:
        for args, expected in [
            (["echo", "--listen", "tcp:x"], "bad endpoint 'tcp:x'"),
            (["coucou", "--nope"], "option --nope not recognized"),
        ]:
            out, err, code = yield utils.getProcessOutputAndValue(
                twistd_command()[0],
                twistd_command()[1:] + ["-n", "--pidfile=", "sockproto", *args],
                env=os.environ,
                path=self.mktemp_dir(),
            )
            self.assertEqual(code, 1)
            self.assertEqual(err.decode().count("\n"), 1, err)
            self.assertIn(expected, err.decode())
            self.assertNotIn(b"Traceback", out + err)


def client_turn() -> Any:
    from twisted.internet import task

    return task.deferLater(reactor, 0.05, lambda: None)


class ChatEndToEndTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_chat_through_twistd_and_the_sockproto_chat_client(self) -> Any:
        cwd = temporary_directory(self)
        server = yield start_twistd(["chat", "--listen", LOCAL], ["chat"], cwd=cwd)
        self.addCleanup(lambda: None if server.ended.called else server.stop("KILL"))
        host, port = server.address("chat")
        bob = yield connect_line_client(TCP4ClientEndpoint(reactor, host, port))
        bob.send("/nick bob")
        yield bob.expect("is now known as bob")

        alice = ChatProcess()
        command = sockproto_command() + ["chat", host, str(port), "--nick", "alice"]
        reactor.spawnProcess(alice, command[0], command, env=os.environ)
        yield bob.expect("is now known as alice")
        alice.transport.write(b"hello bob\n")
        yield bob.expect("<alice> hello bob")
        bob.send("hi alice")
        yield wait_for(lambda: b"<bob> hi alice" in alice.output)
        alice.transport.closeStdin()  # end of input leaves the chat
        self.assertEqual((yield alice.ended), 0)
        yield bob.expect("alice left #lobby (quit)")
        self.assertNotIn(b"Traceback", alice.output + alice.errors)

        status = yield server.stop("TERM")
        yield bob.expect("-!- server shutting down")
        yield bob.closed
        self.assertEqual(status, 0)


class AccountsEndToEndTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_sighup_reads_the_accounts_file_again(self) -> Any:
        cwd = temporary_directory(self)
        path = os.path.join(cwd, "accounts")
        with open(path, "w") as f:
            f.write("alice:secret1\n")
        stamp = os.stat(path)
        server = yield start_twistd(
            ["chat", "--listen", LOCAL, "--auth", f"file:{path}"], ["chat"], cwd=cwd
        )
        self.addCleanup(lambda: None if server.ended.called else server.stop("KILL"))
        host, port = server.address("chat")
        client = yield connect_line_client(TCP4ClientEndpoint(reactor, host, port))
        yield client.expect("joined #lobby")
        # Same size and same time stamp: only SIGHUP tells the server.
        with open(path, "w") as f:
            f.write("alice:secret2\n")
        os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        client.send("/nick alice secret2")
        yield client.expect("wrong password for alice")
        server.transport.signalProcess("HUP")
        yield wait_for(lambda: b"registered nicknames read from" in server.output)
        client.send("/nick alice secret2")
        yield client.expect("is now known as alice")
        client.transport.loseConnection()
        yield client.closed
        self.assertEqual((yield server.stop("TERM")), 0)


class DaemonTests(TestCase):
    """
    twistd without C{-n}: it forks, and the parent exits once the service
    has started, or failed to.
    """

    timeout = 60

    def twistd(self, *args: str) -> Any:
        cwd = temporary_directory(self)
        self.pidfile = os.path.join(cwd, "sockproto.pid")
        self.logfile = os.path.join(cwd, "sockproto.log")
        command = twistd_command() + [
            f"--pidfile={self.pidfile}",
            f"--logfile={self.logfile}",
            "sockproto",
            *args,
        ]
        d = utils.getProcessOutputAndValue(
            command[0], command[1:], env=os.environ, path=cwd
        )
        return d.addTimeout(30, reactor)

    @inlineCallbacks
    def test_busy_port_exits_1_with_the_reason_and_no_pid_file(self) -> Any:
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out, err, status = yield self.twistd(
            "chat", "--listen", f"tcp:{port}:interface=127.0.0.1"
        )
        self.assertEqual(status, 1)
        self.assertIn(b"chat cannot listen on", err)
        self.assertIn(b"Address already in use", err)
        self.assertFalse(os.path.exists(self.pidfile))

    @inlineCallbacks
    def test_daemon_starts_and_stops_on_sigterm(self) -> Any:
        out, err, status = yield self.twistd("echo", "--listen", LOCAL)
        self.assertEqual((status, err), (0, b""))
        with open(self.pidfile) as f:
            pid = int(f.read())
        os.kill(pid, 15)
        yield wait_for(lambda: not os.path.exists(self.pidfile), 10)
        with open(self.logfile) as f:
            self.assertIn("echo listening on 127.0.0.1:", f.read())


class LazyPluginTests(TestCase):
    @inlineCallbacks
    def test_listing_twistd_plugins_imports_nothing_of_sockproto(self) -> Any:
        code = (
            "import sys\n"
            "from twisted.plugin import getPlugins\n"
            "from twisted.application.service import IServiceMaker\n"
            "names = [p.tapname for p in getPlugins(IServiceMaker)]\n"
            "assert 'sockproto' in names, names\n"
            "loaded = [m for m in sys.modules if m.startswith('sockproto')\n"
            "          or m == 'twisted.internet.testing']\n"
            "print(loaded)\n"
        )
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable, ["-c", code], env=os.environ
        )
        self.assertEqual((out, code), (b"[]\n", 0), err)
