"""
The chat over real loopback sockets: many clients, and slow readers.
"""

import os
import shutil
from collections import defaultdict
from typing import Any, Dict, List

from twisted.internet import defer, reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.trial.unittest import SkipTest, TestCase

from sockproto.chat import ChatFactory
from sockproto.testing import (
    LineClient,
    connect_line_client,
    listen_on_loopback,
    wait_for,
)


class ManyClientsTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def setUp(self) -> Any:
        self.factory = ChatFactory(rateLimit=0, maxPerPeer=0)
        self.server = yield listen_on_loopback(self.factory)
        self.addCleanup(self.server.stop)

    @inlineCallbacks
    def test_fifty_clients_every_line_reaches_everyone_once_in_order(self) -> Any:
        count, each = 50, 20
        clients: List[LineClient] = []
        for i in range(count):
            client = yield connect_line_client(self.server.endpoint())
            client.send(f"/nick c{i}")
            yield client.expect(f"is now known as c{i}")
            clients.append(client)
        for i in range(each):
            for n, client in enumerate(clients):
                client.send(f"line {i} from c{n}")

        def delivered(client: LineClient) -> int:
            return sum(1 for line in client.lines if line.startswith("<c"))

        yield wait_for(lambda: all(delivered(c) >= count * each for c in clients), 30)
        for client in clients:
            seen: Dict[str, List[int]] = defaultdict(list)
            for line in client.lines:
                if line.startswith("<c"):
                    nick, text = line[1:].split("> ", 1)
                    seen[nick].append(int(text.split()[1]))
            self.assertEqual(len(seen), count)
            for numbers in seen.values():
                self.assertEqual(numbers, list(range(each)))
        for client in clients:
            client.transport.loseConnection()
        yield defer.gatherResults([c.closed for c in clients])


class NotReading(Protocol):
    def connectionMade(self) -> None:
        self.transport.pauseProducing()
        self.closed: defer.Deferred[None] = defer.Deferred()

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)


class SlowReaderTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_client_that_stops_reading_is_dropped_and_room_goes_on(self) -> Any:
        factory = ChatFactory(rateLimit=0, maxOutput=64 * 1024)
        server = yield listen_on_loopback(factory)
        self.addCleanup(server.stop)
        slow = NotReading()
        yield server.endpoint().connect(Factory.forProtocol(lambda: slow))
        talker = yield connect_line_client(server.endpoint())
        listener = yield connect_line_client(server.endpoint())
        line = "x" * 400
        sent = 0

        def dropped() -> bool:
            return any("(not reading)" in line for line in listener.lines)

        while not dropped() and sent < 100_000:
            for _ in range(100):
                talker.send(f"{sent} {line}")
                sent += 1
            yield listener.expect(f"{sent - 1} ", timeout=30)
        self.assertTrue(dropped(), "the slow reader was never dropped")
        self.assertEqual(len(factory.connections), 2)
        # It was dropped long before the room sent it everything, and the
        # others still get every line.
        self.assertLess(sent * len(line), 40 * (1 << 20))
        slow.transport.resumeProducing()  # now it sees the reset
        yield slow.closed
        talker.send("after")
        yield listener.expect("<guest2> after")
        talker.transport.loseConnection()
        listener.transport.loseConnection()
        yield defer.gatherResults([talker.closed, listener.closed])


class NetcatProcess(ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ended: defer.Deferred[None] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


class NetcatTests(TestCase):
    """
    Real nc and ncat, which end lines with LF alone.
    """

    timeout = 30

    @inlineCallbacks
    def chatWith(self, command: List[str]) -> Any:
        server = yield listen_on_loopback(ChatFactory(rateLimit=0))
        self.addCleanup(server.stop)
        listener = yield connect_line_client(server.endpoint())
        yield listener.expect("joined #lobby")
        tool = NetcatProcess()
        argv = command + ["127.0.0.1", str(server.portNumber)]
        reactor.spawnProcess(tool, argv[0], argv, env=os.environ)  # type: ignore
        tool.transport.write(b"/nick netcat\nhello from nc\n")
        yield listener.expect("<netcat> hello from nc")
        listener.send("hello back")
        yield wait_for(lambda: b"<guest1> hello back" in tool.output)
        tool.transport.write(b"/quit\n")
        tool.transport.closeStdin()
        yield tool.ended
        yield listener.expect("netcat left #lobby (quit)")
        listener.transport.loseConnection()
        yield listener.closed

    def test_nc(self) -> Any:
        return self.chatWith([_tool("nc"), "-q", "1"])

    def test_ncat(self) -> Any:
        return self.chatWith([_tool("ncat")])


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SkipTest(f"{name} is not installed here (.ci/run installs it)")
    return path
