"""
Every service over TLS (C{ssl:} endpoints), and the clients' C{--tls}.
"""

import os
from typing import Any

from twisted.internet import reactor, utils
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, TestCase

from sockproto.chat import ChatFactory, ChatProtocol
from sockproto.coucou import CoucouServerFactory, MessageList, send_message
from sockproto.echo import EchoFactory
from sockproto.testing import (
    connect_line_client,
    listen_on_loopback,
    listen_tls_on_loopback,
    make_certificate,
    start_twistd,
    temporary_directory,
    tls_client_endpoint,
    tls_endpoint_description,
    wait_for,
)

from .support import run_sockproto, sockproto_command

try:
    import OpenSSL  # noqa: F401
except ImportError:
    OpenSSL = None


class TLSTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        if OpenSSL is None:
            raise SkipTest("pyOpenSSL is missing: pip install 'sockproto[tls]'")
        directory = temporary_directory(self)
        self.cert, self.key = make_certificate(directory)

    @inlineCallbacks
    def serve(self, factory: Any) -> Any:
        server = yield listen_tls_on_loopback(factory, self.cert, self.key)
        self.addCleanup(server.stop)
        return server

    @inlineCallbacks
    def test_echo_over_tls(self) -> Any:
        server = yield self.serve(EchoFactory())
        client = yield connect_line_client(tls_client_endpoint(server, self.cert))
        client.send("secret")
        self.assertEqual((yield client.expect("secret")), "secret")
        client.transport.loseConnection()
        yield client.closed

    @inlineCallbacks
    def test_coucou_over_tls(self) -> Any:
        sink = MessageList()
        server = yield self.serve(CoucouServerFactory(sink))
        reply = yield send_message(tls_client_endpoint(server, self.cert), b"coucou")
        self.assertEqual(reply, b"")
        self.assertEqual(sink.messages, ["coucou"])

    @inlineCallbacks
    def test_chat_over_tls(self) -> Any:
        server = yield self.serve(ChatFactory(rateLimit=0))
        alice = yield connect_line_client(tls_client_endpoint(server, self.cert))
        bob = yield connect_line_client(tls_client_endpoint(server, self.cert))
        alice.send("over tls")
        yield bob.expect("<guest1> over tls")
        for client in (alice, bob):
            client.transport.loseConnection()
            yield client.closed

    @inlineCallbacks
    def test_unfinished_handshake_never_joins_and_times_out(self) -> Any:
        clock = Clock()
        factory = ChatFactory(rateLimit=0, clock=clock)
        server = yield self.serve(factory)
        silent = yield connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", server.port.getHost().port),
            Protocol(),
        )
        yield wait_for(lambda: len(factory.connections) == 1, 10)
        [protocol] = factory.connections
        self.assertFalse(protocol.ready)
        self.assertEqual(factory.server.getRoom("lobby").memberNicks(), [])
        self.assertIsNone(factory.server.find("guest1"))
        clock.advance(ChatProtocol.handshakeTimeout)
        clock.advance(ChatProtocol.abortDelay)
        yield wait_for(lambda: not factory.connections, 10)
        self.assertEqual(factory.server.getRoom("lobby").memberNicks(), [])
        silent.transport.abortConnection()

    def sockproto(self, *args: str) -> Any:
        return run_sockproto(self, *args)

    @inlineCallbacks
    def test_send_tls_with_ca_file(self) -> Any:
        sink = MessageList()
        server = yield self.serve(CoucouServerFactory(sink))
        port = str(server.portNumber)
        out, err, code = yield self.sockproto(
            "send", "--tls", "--ca", self.cert, "localhost", port, "chut"
        )
        self.assertEqual((err, code), ("", 0))
        self.assertEqual(sink.messages, ["chut"])

    @inlineCallbacks
    def test_send_tls_to_echo_prints_the_echo(self) -> Any:
        server = yield self.serve(EchoFactory())
        port = str(server.portNumber)
        out, err, code = yield self.sockproto(
            "send", "--tls", "--ca", self.cert, "localhost", port, "ping"
        )
        self.assertEqual((out, err, code), ("ping\n", "", 0))

    @inlineCallbacks
    def test_plain_send_to_a_tls_port_says_so(self) -> Any:
        sink = MessageList()
        server = yield self.serve(CoucouServerFactory(sink))
        port = str(server.portNumber)
        out, err, code = yield self.sockproto("send", "localhost", port, "lost")
        self.assertEqual(code, 1, (out, err))
        self.assertEqual(
            err,
            "sockproto: the server said: error: this port speaks TLS: use a TLS"
            " client (sockproto send --tls)\n",
        )
        self.assertEqual(sink.messages, [])

    @inlineCallbacks
    def test_plain_chat_client_on_a_tls_port_is_told(self) -> Any:
        server = yield self.serve(ChatFactory())
        client = yield connect_line_client(server.endpoint())
        client.send("hello?")
        line = yield client.expect("error:")
        self.assertEqual(
            line,
            "-!- error: this port speaks TLS: use a TLS client (sockproto chat --tls)",
        )
        yield client.closed

    @inlineCallbacks
    def test_send_tls_refuses_an_untrusted_certificate(self) -> Any:
        sink = MessageList()
        server = yield self.serve(CoucouServerFactory(sink))
        port = str(server.portNumber)
        out, err, code = yield self.sockproto("send", "--tls", "localhost", port)
        self.assertEqual(code, 1)
        self.assertEqual(err.count("\n"), 1, err)
        self.assertIn(f"sockproto: TLS with localhost:{port} failed", err)
        self.assertIn("certificate verify failed", err)
        self.assertEqual(sink.messages, [])

    @inlineCallbacks
    def test_ca_without_tls_is_an_error(self) -> Any:
        out, err, code = yield self.sockproto(
            "send", "--ca", self.cert, "localhost", "1"
        )
        self.assertEqual(code, 2)  # a usage error
        self.assertEqual(err.splitlines()[0][:32], "sockproto: --ca goes with --tls ")

    @inlineCallbacks
    def test_twistd_chat_on_ssl_endpoint_with_sockproto_chat_tls(self) -> Any:
        cwd = temporary_directory(self)
        description = tls_endpoint_description(self.cert, self.key)
        server = yield start_twistd(
            ["chat", "--listen", description], ["chat"], cwd=cwd
        )
        self.addCleanup(lambda: None if server.ended.called else server.stop("KILL"))
        host, port = server.address("chat")
        command = sockproto_command() + [
            "chat",
            "--tls",
            "--ca",
            self.cert,
            "localhost",
            str(port),
            "--nick",
            "tlsuser",
        ]
        out, err, code = yield utils.getProcessOutputAndValue(
            command[0], command[1:], env=os.environ, stdinBytes=b"hello\n/quit\n"
        )
        self.assertEqual(code, 0, err)
        self.assertIn(b"<tlsuser> hello", out)
        self.assertEqual((yield server.stop()), 0)
        # Closed by the TLS shutdown, not by the abort timer 10 s later:
        self.assertIn(b"closed: Connection was closed cleanly.", server.output)
        self.assertNotIn(b"non-clean", server.output)


class HostnameTests(TestCase):
    """
    A trusted certificate is not enough: it must name the host, in its
    subjectAltName, or every client refuses it in one line, exit 1.
    """

    timeout = 60

    def setUp(self) -> None:
        if OpenSSL is None:
            raise SkipTest("pyOpenSSL is missing: pip install 'sockproto[tls]'")
        self.directory = temporary_directory(self)

    @inlineCallbacks
    def serve(self, names: Any, factory: Any = None) -> Any:
        folder = os.path.join(self.directory, str(len(os.listdir(self.directory))))
        os.mkdir(folder)
        cert, key = make_certificate(folder, "localhost", names)
        sink = MessageList()
        if factory is None:
            factory = CoucouServerFactory(sink)
        server = yield listen_tls_on_loopback(factory, cert, key)
        self.addCleanup(server.stop)
        return server, cert, sink

    @inlineCallbacks
    def send(self, names: Any) -> Any:
        server, cert, sink = yield self.serve(names)
        port = str(server.portNumber)
        result = yield run_sockproto(
            self, "send", "--tls", "--ca", cert, "localhost", port, "secret"
        )
        return result, sink, port

    @inlineCallbacks
    def test_send_refuses_a_certificate_without_subject_alt_name(self) -> Any:
        (out, err, code), sink, port = yield self.send(())
        self.assertEqual((code, err.count("\n")), (1, 1), err)
        self.assertEqual(
            err,
            f"sockproto: TLS with localhost:{port} failed: the certificate has"
            " no subjectAltName, so it names no host\n",
        )
        self.assertEqual(sink.messages, [])

    @inlineCallbacks
    def test_send_refuses_a_certificate_for_another_host(self) -> Any:
        (out, err, code), sink, port = yield self.send(["example.com"])
        self.assertEqual(
            (err, code),
            (
                f"sockproto: TLS with localhost:{port} failed: the certificate"
                " is not for localhost\n",
                1,
            ),
        )
        self.assertEqual(sink.messages, [])

    @inlineCallbacks
    def test_send_accepts_the_right_certificate(self) -> Any:
        (out, err, code), sink, port = yield self.send(["localhost"])
        self.assertEqual((err, code), ("", 0))
        self.assertEqual(sink.messages, ["secret"])

    @inlineCallbacks
    def test_send_checks_an_ip_address_against_the_ip_names(self) -> Any:
        server, cert, sink = yield self.serve(["localhost"])
        port = str(server.portNumber)
        out, err, code = yield run_sockproto(
            self, "send", "--tls", "--ca", cert, "127.0.0.1", port, "x"
        )
        self.assertEqual(code, 1, err)
        self.assertIn("the certificate is not for 127.0.0.1", err)
        self.assertEqual(sink.messages, [])

    @inlineCallbacks
    def chat(self, names: Any, stdin: bytes) -> Any:
        server, cert, sink = yield self.serve(names, ChatFactory(rateLimit=0))
        command = sockproto_command() + [
            "chat",
            "--tls",
            "--ca",
            cert,
            "localhost",
            str(server.portNumber),
        ]
        out, err, code = yield utils.getProcessOutputAndValue(
            command[0], command[1:], env=os.environ, stdinBytes=stdin
        )
        self.assertNotIn(b"Traceback", out + err)
        return out.decode(), err.decode(), code, server

    @inlineCallbacks
    def test_chat_refuses_a_certificate_without_subject_alt_name(self) -> Any:
        out, err, code, server = yield self.chat((), b"hello\n")
        self.assertEqual((code, err.count("\n")), (1, 1), err)
        self.assertIn("failed: the certificate has no subjectAltName", err)
        self.assertEqual(list(server.factory.server.getRoom("lobby").history), [])

    @inlineCallbacks
    def test_chat_fails_the_handshake_even_when_input_ends_first(self) -> Any:
        for stdin in (b"/quit\n", b""):
            out, err, code, server = yield self.chat(["example.com"], stdin)
            self.assertEqual((code, err.count("\n")), (1, 1), (stdin, err))
            self.assertIn("failed: the certificate is not for localhost", err)

    @inlineCallbacks
    def test_chat_with_the_right_certificate_talks(self) -> Any:
        out, err, code, server = yield self.chat(["localhost"], b"hi\n/quit\n")
        self.assertEqual((err, code), ("", 0))
        self.assertIn("<guest1> hi", out)


class TLSOnPlainPortTests(TestCase):
    """
    A TLS client pointed at a plain port (an easy mistake): its handshake
    reaches nobody, it gets a hint, and the log one line.
    """

    timeout = 60

    def setUp(self) -> None:
        if OpenSSL is None:
            raise SkipTest("pyOpenSSL is missing: pip install 'sockproto[tls]'")
        self.cert, self.key = make_certificate(temporary_directory(self))

    @inlineCallbacks
    def test_a_tls_hello_on_the_chat_port_reaches_nobody(self) -> Any:
        factory = ChatFactory(rateLimit=0)
        server = yield listen_on_loopback(factory)
        self.addCleanup(server.stop)
        bob = yield connect_line_client(server.endpoint())
        yield bob.expect("alone")
        seen = len(bob.lines)
        out, err, code = yield run_sockproto(
            self,
            "chat",
            "--tls",
            "--ca",
            self.cert,
            "localhost",
            str(server.portNumber),
        )
        self.assertEqual((code, err.count("\n")), (1, 1), err)
        self.assertIn("try without --tls", err)
        bob.send("/who")
        yield bob.expect("in #lobby")
        self.assertEqual(
            [line for line in bob.lines[seen:] if not line.startswith("-!- ")], []
        )
        self.assertEqual(list(factory.server.getRoom("lobby").history), [])
        self.assertEqual(factory.drops.get("tls_on_plain_port"), 1)
        bob.transport.loseConnection()
        yield bob.closed

    @inlineCallbacks
    def test_a_tls_hello_on_the_coucou_port_is_not_a_message(self) -> Any:
        sink = MessageList()
        server = yield listen_on_loopback(CoucouServerFactory(sink))
        self.addCleanup(server.stop)
        out, err, code = yield run_sockproto(
            self,
            "send",
            "--tls",
            "--ca",
            self.cert,
            "localhost",
            str(server.portNumber),
            "x",
        )
        self.assertEqual(code, 1, err)
        self.assertEqual(sink.messages, [])
