"""
The C{sockproto} command, in process and as a user runs it.
"""

import os
import platform
import re
import sys
from typing import Any

from twisted.cred import strcred
from twisted.internet import reactor, utils
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SkipTest, TestCase
from zope.interface import implementer

from sockproto import __version__
from sockproto.chat import ChatFactory
from sockproto.cli import CommandError, SendOptions, send
from sockproto.coucou import CoucouServerFactory, MessageList
from sockproto.echo import EchoFactory
from sockproto.testing import (
    connect_line_client,
    listen_on_loopback,
    temporary_directory,
    wait_for,
)

from .support import ChatProcess, run_sockproto, sockproto_command


def options(*args: str) -> SendOptions:
    parsed = SendOptions()
    parsed.parseOptions(list(args))
    return parsed


class SendTests(TestCase):
    @inlineCallbacks
    def test_sends_to_coucou_server_over_ipv6(self) -> Any:
        sink = MessageList()
        server = yield listen_on_loopback(CoucouServerFactory(sink), host="::1")
        self.addCleanup(server.stop)
        yield send(reactor, options("::1", str(server.portNumber), "salut"))
        self.assertEqual(sink.messages, ["salut"])

    def test_unknown_host_is_a_command_error(self) -> Any:
        memory = MemoryReactorClock()  # its resolver knows no names
        memory.nameResolver = _NoNames()
        d = send(memory, options("nowhere.invalid", "1"))
        failure = self.failureResultOf(d, CommandError)
        self.assertEqual(
            failure.getErrorMessage(), "cannot resolve host 'nowhere.invalid'"
        )

    def test_port_must_be_a_number(self) -> None:
        from twisted.python.usage import UsageError

        self.assertRaises(UsageError, options, "localhost", "http")
        self.assertRaises(UsageError, options, "localhost", "70000")


class _NoNames:
    def resolveHostName(
        self, receiver: Any, hostName: str, *args: Any, **kw: Any
    ) -> Any:
        receiver.resolutionBegan(None)
        receiver.resolutionComplete()
        return receiver


class CommandLineTests(TestCase):
    """
    The console script in a child process: exit status and one-line errors.
    """

    def sockproto(self, *args: str) -> Any:
        return run_sockproto(self, *args)

    @inlineCallbacks
    def test_send_prints_what_the_server_echoes(self) -> Any:
        server = yield listen_on_loopback(EchoFactory())
        self.addCleanup(server.stop)
        out, err, code = yield self.sockproto(
            "send", "127.0.0.1", str(server.portNumber)
        )
        self.assertEqual((out, err, code), ("coucou\n", "", 0))

    @inlineCallbacks
    def test_server_error_line_means_exit_1(self) -> Any:
        server = yield listen_on_loopback(CoucouServerFactory(MessageList(), maxSize=3))
        self.addCleanup(server.stop)
        out, err, code = yield self.sockproto(
            "send", "127.0.0.1", str(server.portNumber)
        )
        self.assertEqual(code, 1)
        self.assertEqual(
            err, "sockproto: the server said: error: message longer than 3 bytes\n"
        )

    @inlineCallbacks
    def test_connection_refused_is_one_line(self) -> Any:
        server = yield listen_on_loopback(EchoFactory())
        port = server.portNumber
        yield server.stop()
        out, err, code = yield self.sockproto("send", "127.0.0.1", str(port))
        self.assertEqual(code, 1)
        self.assertEqual(err, f"sockproto: connection refused by 127.0.0.1:{port}\n")

    @inlineCallbacks
    def test_chat_connection_refused_is_one_line(self) -> Any:
        server = yield listen_on_loopback(EchoFactory())
        port = server.portNumber
        yield server.stop()
        out, err, code = yield self.sockproto("chat", "127.0.0.1", str(port), "-n", "x")
        self.assertEqual(code, 1)
        self.assertEqual(err, f"sockproto: connection refused by 127.0.0.1:{port}\n")

    @inlineCallbacks
    def test_timeout_is_one_line(self) -> Any:
        # A server that accepts and never closes.
        server = yield listen_on_loopback(_Silent())
        self.addCleanup(server.stop)
        out, err, code = yield self.sockproto(
            "send", "--timeout", "0.5", "127.0.0.1", str(server.portNumber)
        )
        self.assertEqual(code, 1)
        where = f"127.0.0.1:{server.portNumber}"
        self.assertEqual(
            err, f"sockproto: timed out after 0.5 seconds talking to {where}\n"
        )

    @inlineCallbacks
    def test_host_in_brackets_as_the_logs_print_it(self) -> Any:
        server = yield listen_on_loopback(EchoFactory(), host="::1")
        self.addCleanup(server.stop)
        out, err, code = yield self.sockproto(
            "send", "[::1]", str(server.portNumber), "hi"
        )
        self.assertEqual((out, err, code), ("hi\n", "", 0))

    @inlineCallbacks
    def test_chat_ctrl_c_exits_130_quietly(self) -> Any:
        server = yield listen_on_loopback(ChatFactory())
        self.addCleanup(server.stop)
        client = yield self.startChat(server)
        client.transport.signalProcess("INT")
        self.assertEqual((yield client.ended), 130)
        self.assertEqual(client.errors, b"")

    @inlineCallbacks
    def test_chat_says_so_when_the_server_closes(self) -> Any:
        factory = ChatFactory()
        server = yield listen_on_loopback(factory)
        self.addCleanup(server.stop)
        client = yield self.startChat(server)
        yield factory.closeAll()
        self.assertEqual((yield client.ended), 1)
        where = f"127.0.0.1:{server.portNumber}"
        self.assertEqual(
            client.errors.decode(), f"sockproto: {where} closed the connection\n"
        )
        self.assertIn(b"-!- server shutting down", client.output)

    @inlineCallbacks
    def startChat(self, server: Any, *args: str) -> Any:
        client = ChatProcess()
        where = list(args) or ["127.0.0.1", str(server.portNumber)]
        command = sockproto_command() + ["chat", *where]
        reactor.spawnProcess(client, command[0], command, env=os.environ)
        yield wait_for(lambda: b"joined #lobby" in client.output or client.ended.called)
        return client

    @inlineCallbacks
    def test_chat_on_a_terminal_keeps_the_line_being_typed(self) -> Any:
        if platform.python_implementation() == "PyPy":
            raise SkipTest(
                "PyPy's readline is pyrepl, not GNU readline: sockproto chat"
                " reads lines plainly there"
            )
        server = yield listen_on_loopback(ChatFactory())
        self.addCleanup(server.stop)
        bob = yield connect_line_client(server.endpoint())
        yield bob.expect("joined #lobby")
        client = ChatProcess()
        command = sockproto_command() + ["chat", "127.0.0.1", str(server.portNumber)]
        reactor.spawnProcess(client, command[0], command, env=os.environ, usePTY=True)
        yield wait_for(lambda: b"joined #lobby" in client.output)
        client.transport.write(b"hel")
        yield wait_for(lambda: shown(client.output).endswith(b"hel"))  # echoed
        bob.send("hi there")
        yield wait_for(lambda: b"hi there" in client.output)
        # The line from the server went above; what was typed is still there.
        yield wait_for(lambda: b"hel" in shown(client.output).split(b"hi there")[1])
        client.transport.write(b"lo\r")
        yield bob.expect("> hello")
        client.transport.write(b"\x04")  # Ctrl-D on an empty line
        self.assertEqual((yield client.ended), 0)
        bob.transport.loseConnection()
        yield bob.closed

    @inlineCallbacks
    def test_chat_with_a_refused_nick_exits_1_with_the_reason(self) -> Any:
        server = yield listen_on_loopback(ChatFactory())
        self.addCleanup(server.stop)
        port = str(server.portNumber)
        holder = yield self.startChat(server, "127.0.0.1", port, "--nick", "holder")
        yield wait_for(lambda: b"is now known as holder" in holder.output)
        for nick, reason in [
            ("9lives", "invalid nickname '9lives'"),
            ("holder", "nickname holder is taken"),
        ]:
            out, err, code = yield self.sockproto(
                "chat", "127.0.0.1", port, "--nick", nick
            )
            self.assertEqual(code, 1, err)
            refused = f"sockproto: 127.0.0.1:{port} refused the nickname: {reason}"
            self.assertTrue(err.startswith(refused), err)
        holder.transport.closeStdin()
        yield holder.ended

    @inlineCallbacks
    def test_chat_password_file_takes_a_registered_nick(self) -> Any:
        factory = ChatFactory(checker=strcred.makeChecker("memory:alice:s3cret"))
        server = yield listen_on_loopback(factory)
        self.addCleanup(server.stop)
        path = os.path.join(temporary_directory(self), "password")
        with open(path, "w") as f:
            f.write("s3cret\n")
        client = yield self.startChat(
            server,
            "127.0.0.1",
            str(server.portNumber),
            "--nick",
            "alice",
            "--password-file",
            path,
        )
        yield wait_for(lambda: b"is now known as alice" in client.output)
        self.assertNotIn(b"s3cret", client.output)
        client.transport.closeStdin()
        self.assertEqual((yield client.ended), 0)

    @inlineCallbacks
    def test_chat_and_send_take_endpoint_strings(self) -> Any:
        path = os.path.join(temporary_directory(self), "chat.sock")
        port = yield serverFromString(reactor, f"unix:{path}").listen(ChatFactory())
        self.addCleanup(port.stopListening)
        client = yield self.startChat(None, f"unix:{path}")
        self.assertIn(b"Welcome", client.output)
        client.transport.closeStdin()
        self.assertEqual((yield client.ended), 0)

    @inlineCallbacks
    def test_help_version_and_python_m(self) -> Any:
        out, err, code = yield self.sockproto("-h")
        self.assertEqual(code, 0)
        self.assertIn("send", out)
        out, err, code = yield self.sockproto("send", "--version")
        self.assertEqual((out, code), (f"sockproto {__version__}\n", 0))
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable, ["-m", "sockproto", "--version"], env=os.environ
        )
        self.assertEqual((out, code), (f"sockproto {__version__}\n".encode(), 0))

    @inlineCallbacks
    def test_benchmarks_refuse_unknown_parts(self) -> Any:
        script = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "run.py")
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable, [script, "--only", "bogus"], env=os.environ
        )
        self.assertEqual(code, 2)
        self.assertIn(b"unknown part bogus", err)

    @inlineCallbacks
    def test_usage_errors_are_one_line(self) -> Any:
        for args in [
            (),
            ("send",),
            ("send", "h", "p"),
            ("frob",),
            ("chat", "h", "1", "--nick", "two words"),
        ]:
            out, err, code = yield self.sockproto(*args)
            self.assertEqual(code, 2, (args, err))
            self.assertEqual(err.count("\n"), 1, err)


@implementer(IHalfCloseableProtocol)
class _Mute(Protocol):
    """
    Reads, never answers, never closes.
    """

    def readConnectionLost(self) -> None:
        pass

    def writeConnectionLost(self) -> None:
        pass


def _Silent() -> Factory:
    return Factory.forProtocol(_Mute)


def shown(output: bytes) -> bytes:
    """
    C{output} without terminal escape sequences: what the text shows.
    """
    return re.sub(rb"\x1b(\[[0-9;?]*[A-Za-z@]|[=>])", b"", output)
