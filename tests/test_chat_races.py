"""
Connections that close together, over real loopback sockets: the room,
the nicknames and the connection slots must all survive them.
"""

from typing import Any, List

from twisted.internet import defer
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from sockproto.chat import ChatFactory
from sockproto.testing import (
    LineClient,
    connect_line_client,
    listen_on_loopback,
    wait_for,
)


class ConcurrentCloseTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def setUp(self) -> Any:
        self.factory = ChatFactory(rateLimit=0, maxConnections=6, maxPerPeer=0)
        self.server = yield listen_on_loopback(self.factory)
        self.addCleanup(self.server.stop)

    @inlineCallbacks
    def connectClients(self, count: int) -> Any:
        clients: List[LineClient] = []
        for _ in range(count):
            client = yield connect_line_client(self.server.endpoint())
            yield client.expect("joined #lobby")
            clients.append(client)
        return clients

    @inlineCallbacks
    def test_pairs_closing_at_once_leave_room_nicks_and_slots_intact(self) -> Any:
        for _ in range(10):
            pair = yield self.connectClients(2)
            for client in pair:
                client.transport.abortConnection()
            yield defer.gatherResults([c.closed for c in pair])
            yield self.waitUntilEmpty()
        self.assertEqual(self.factory.perPeer, {})
        self.assertEqual(list(self.factory.server.getRoom("lobby").members), [])
        clients = yield self.connectClients(6)
        for n, client in enumerate(clients):
            client.send(f"line {n}")
        expected = {f"line {n}" for n in range(6)}

        def everyoneHasEveryLine() -> bool:
            return all(
                expected <= {line.partition("> ")[2] for line in client.lines}
                for client in clients
            )

        yield wait_for(everyoneHasEveryLine, 10)
        self.assertEqual(self.flushLoggedErrors(), [])
        for client in clients:
            client.transport.loseConnection()
        yield defer.gatherResults([c.closed for c in clients])

    @inlineCallbacks
    def test_private_message_to_a_nick_freed_by_a_close(self) -> Any:
        alice, bob, carol = yield self.connectClients(3)
        bob.send("/nick bob")
        yield bob.expect("is now known as bob")
        bob.transport.abortConnection()
        carol.transport.abortConnection()
        yield defer.gatherResults([bob.closed, carol.closed])
        yield self.waitUntilEmpty(1)
        alice.send("/msg bob are you there")
        yield alice.expect("no such nickname: bob")
        self.assertEqual(self.flushLoggedErrors(), [])
        alice.transport.loseConnection()
        yield alice.closed

    @inlineCallbacks
    def waitUntilEmpty(self, left: int = 0) -> Any:
        yield wait_for(lambda: len(self.factory.connections) == left, 10)
