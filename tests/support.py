"""
Helpers the test modules share (this is not a test module: test modules
import from here, never from each other).
"""

import atexit
import os
import sys
import tempfile
from typing import Any, Dict, List, Tuple

from twisted.internet import utils
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import SkipTest, TestCase
from zope.interface import implementer

from sockproto.chat.events import ChatEvent, EventBatch
from sockproto.chat.frontends.irc import IrcChatFactory
from sockproto.chat.frontends.line import ChatFactory
from sockproto.chat.interfaces import IChatMember
from sockproto.testing import (
    ChatOnClock,
    RedisServer,
    connect,
    connect_line_client,
    listen_on_loopback,
)

try:
    import prometheus_client
except ImportError:
    prometheus_client = None


_redis: List[RedisServer] = []


def module_redis() -> RedisServer:
    """
    One redis-server for the test run, started on first use and stopped
    when the tests end.
    """
    if not _redis:
        directory = tempfile.TemporaryDirectory(prefix="sockproto-redis-")
        server = RedisServer(directory.name)
        server.start()
        atexit.register(directory.cleanup)
        atexit.register(server.stop)
        _redis.append(server)
    return _redis[0]


@inlineCallbacks
def nc_and_ircd(test: TestCase) -> Any:
    """
    A chat's line port and IRC port on loopback, and a line client in it
    called C{ncuser}: fires with (the IRC port, the line client).
    """
    chat = ChatFactory(rateLimit=0)
    lines = yield listen_on_loopback(chat)
    test.addCleanup(lines.stop)
    ircd = yield listen_on_loopback(IrcChatFactory(chat))
    test.addCleanup(ircd.stop)
    nc = yield connect_line_client(lines.endpoint())
    test.addCleanup(nc.transport.loseConnection)
    yield nc.expect("you are in #lobby")
    nc.send("/nick ncuser")
    yield nc.expect("is now known as ncuser")
    return ircd, nc


def sockproto_command() -> List[str]:
    script = os.path.join(os.path.dirname(sys.executable), "sockproto")
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-c", "from sockproto.cli import main; main()"]


@inlineCallbacks
def run_sockproto(test: TestCase, *args: str) -> Any:
    """
    Run the C{sockproto} command; check that no traceback reached the user;
    return its output, errors and exit status.
    """
    command = sockproto_command()
    out, err, code = yield utils.getProcessOutputAndValue(
        command[0], command[1:] + list(args), env=os.environ
    )
    test.assertNotIn(b"Traceback", out + err)
    return out.decode(), err.decode(), code


class ChatProcess(ProcessProtocol):
    """
    C{sockproto chat} in a child process, its standard input left open.
    """

    def __init__(self) -> None:
        self.output = b""
        self.errors = b""
        self.ended: Deferred[int] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    def errReceived(self, data: bytes) -> None:
        self.errors += data

    def processEnded(self, reason: Any) -> None:
        value = reason.value
        code = value.exitCode if value.exitCode is not None else -value.signal
        self.ended.callback(code)


@implementer(IChatMember)
class Member:
    def __init__(self, nick: str) -> None:
        self.nick = nick
        self.batches: List[EventBatch] = []
        self.private: List[ChatEvent] = []

    def deliver(self, batch: EventBatch) -> None:
        self.batches.append(batch)

    def receive(self, event: ChatEvent) -> None:
        self.private.append(event)

    def events(self) -> List[Any]:
        return [(e.kind, e.nick, e.text) for b in self.batches for e in b.events]


Samples = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """
    Every sample of a Prometheus text page, by name and labels.
    """
    from prometheus_client.parser import text_string_to_metric_families

    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def scrape(*factories: Any) -> Samples:
    """
    What the collector of C{factories} shows, parsed.
    """
    from prometheus_client import CollectorRegistry, generate_latest

    from sockproto.metrics import SockprotoCollector

    registry = CollectorRegistry()
    registry.register(SockprotoCollector(factories))  # type: ignore[arg-type]
    return parse(generate_latest(registry).decode())


def need_prometheus_client() -> None:
    if prometheus_client is None:
        raise SkipTest("prometheus_client missing: pip install 'sockproto[metrics]'")


class IrcClient:
    """
    An IRC connection in memory: what it sent, and the lines it got.
    """

    def __init__(self, chat: ChatOnClock, port: int, host: str = "127.0.0.1") -> None:
        from twisted.internet.address import IPv4Address

        self.chat = chat
        factory = getattr(chat, "_irc", None)
        if factory is None:
            factory = chat._irc = IrcChatFactory(chat.factory)  # type: ignore
        self.protocol, self.transport = connect(factory, IPv4Address("TCP", host, port))
        self.chat.clock.advance(0)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)
        self.chat.clock.advance(0)

    def lines(self) -> List[str]:
        data = self.transport.value().decode("utf-8")
        self.transport.clear()
        return [line for line in data.split("\r\n") if line]

    def register(self, nick: str) -> List[str]:
        self.send(f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n".encode())
        return self.lines()
