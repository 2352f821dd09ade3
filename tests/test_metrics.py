"""
C{--metrics}: what the services count, as Prometheus reads it — parsed with
C{prometheus_client.parser}, in memory and scraped over HTTP from a
C{twistd -n sockproto} process.
"""

import os
from typing import Any, Tuple

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet import reactor, utils
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from sockproto.echo import EchoFactory
from sockproto.testing import (
    ChatOnClock,
    connect,
    connect_line_client,
    start_twistd,
    temporary_directory,
    twistd_command,
)

from .support import Samples, need_prometheus_client, parse, scrape


class _Get(Protocol):
    def __init__(self, path: str) -> None:
        self.path = path
        self.data = b""
        self.done: Deferred[Tuple[bytes, bytes]] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(f"GET {self.path} HTTP/1.0\r\n\r\n".encode())

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Any = None) -> None:
        head, _, body = self.data.partition(b"\r\n\r\n")
        self.done.callback((head.split(b"\r\n")[0], body))


@inlineCallbacks
def http_get(host: str, port: int, path: str) -> Any:
    """
    The status line and body of C{GET path} over HTTP/1.0.
    """
    protocol = _Get(path)
    yield connectProtocol(TCP4ClientEndpoint(reactor, host, port), protocol)
    return (yield protocol.done)


class CollectorTests(SynchronousTestCase):
    def setUp(self) -> None:
        need_prometheus_client()

    def scrape(self, *factories: Any) -> Samples:
        return scrape(*factories)

    def test_chat_counts_connections_lines_deliveries_drops_and_passwords(self) -> None:
        clock = Clock()
        checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"secret")
        chat = ChatOnClock(clock=clock, checker=checker, maxPerPeer=2)
        factory = chat.factory
        (a, aT), (_, bT) = chat.join(), chat.join()
        refused = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        chat.send(a, "hello", "x" * 600, "/nick alice wrong")
        samples = self.scrape(factory)
        chat_ = (("service", "chat"),)
        self.assertEqual(samples[("sockproto_connections_open", chat_)], 2)
        self.assertEqual(samples[("sockproto_connections_accepted_total", chat_)], 2)
        per_peer = (("reason", "per_peer"), ("service", "chat"))
        self.assertEqual(samples[("sockproto_connections_refused_total", per_peer)], 1)
        self.assertIsNotNone(refused)
        too_long = (("reason", "line_too_long"), ("service", "chat"))
        self.assertEqual(samples[("sockproto_drops_total", too_long)], 1)
        self.assertEqual(samples[("sockproto_chat_lines_total", ())], 1)
        # two joins (to 1, then 2 members) and a line to 2 members
        self.assertEqual(samples[("sockproto_chat_deliveries_total", ())], 5)
        self.assertEqual(samples[("sockproto_chat_members", ())], 2)
        self.assertEqual(samples[("sockproto_chat_rooms", ())], 1)
        self.assertEqual(samples[("sockproto_chat_wrong_passwords_total", ())], 1)
        received = samples[("sockproto_received_bytes_total", chat_)]
        self.assertEqual(
            received, len(b"hello\n" + b"x" * 600 + b"\n/nick alice wrong\n")
        )
        self.assertEqual(
            samples[("sockproto_sent_bytes_total", chat_)],
            len(aT.value()) + len(bT.value()),
        )

    def test_echo_counts_bytes_both_ways_and_idle_timeouts(self) -> None:
        clock = Clock()
        factory = EchoFactory(clock=clock, timeout=5)
        protocol, transport = connect(factory)
        protocol.dataReceived(b"abc")
        clock.advance(6)
        samples = self.scrape(factory)
        echo = (("service", "echo"),)
        self.assertEqual(samples[("sockproto_received_bytes_total", echo)], 3)
        self.assertEqual(samples[("sockproto_sent_bytes_total", echo)], 3)
        self.assertEqual(samples[("sockproto_idle_timeouts_total", echo)], 1)
        self.assertNotIn(("sockproto_chat_lines_total", ()), samples)


class ScrapeTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        need_prometheus_client()
        self.directory = temporary_directory(self)

    @inlineCallbacks
    def test_twistd_serves_metrics_over_http(self) -> Any:
        args = ["chat", "--listen", "tcp:0:interface=127.0.0.1"]
        args += ["--web", "tcp:0:interface=127.0.0.1"]
        args += ["--metrics", "tcp:0:interface=127.0.0.1"]
        services = ["chat", "web", "metrics"]
        process = yield start_twistd(args, services, cwd=self.directory)
        self.addCleanup(process.stop, "KILL")
        host, port = process.address("chat")
        client = yield connect_line_client(TCP4ClientEndpoint(reactor, host, port))
        self.addCleanup(client.transport.loseConnection)
        client.send("hello")
        yield client.expect("> hello")
        host, port = process.address("metrics")
        status, body = yield http_get(host, port, "/metrics")
        self.assertEqual(status, b"HTTP/1.0 200 OK")
        samples = parse(body.decode())
        chat = (("service", "chat"),)
        self.assertEqual(samples[("sockproto_connections_accepted_total", chat)], 1)
        web = (("service", "web"),)
        self.assertEqual(samples[("sockproto_connections_open", web)], 0)
        self.assertEqual(samples[("sockproto_chat_lines_total", ())], 1)
        self.assertIn(("process_open_fds", ()), samples)
        status, _ = yield http_get(host, port, "/")
        self.assertEqual(status, b"HTTP/1.0 404 Not Found")
        yield process.stop()
        self.assertNotIn(b"GET /metrics", process.output)

    @inlineCallbacks
    def test_metrics_usage_errors_are_one_line(self) -> Any:
        for args, expected in [
            (["--metrics", "tcp:0", "chat"], "--metrics before chat"),
            (["echo", "--metrics", "tcp:x"], "bad endpoint"),
            (["echo", "--workers", "2", "--metrics", "tcp:0"], "with --workers"),
        ]:
            command = twistd_command() + ["-n", "--pidfile=", "sockproto", *args]
            out, err, code = yield utils.getProcessOutputAndValue(
                command[0], command[1:], env=os.environ, path=self.directory
            )
            self.assertEqual(code, 1, (args, err))
            self.assertEqual(err.decode().count("\n"), 1, err)
            self.assertIn(expected, err.decode())
