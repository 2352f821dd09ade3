"""
sockproto's own test helpers: the in-memory connection behaves as a TCP
connection does where sockproto's protocols can tell.
"""

from typing import Any, List

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from sockproto.testing import connect_in_memory


@implementer(IHalfCloseableProtocol)
class Recorder(Protocol):
    def __init__(self) -> None:
        self.received: List[bytes] = []
        self.events: List[str] = []
        self.reason: Any = None

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def readConnectionLost(self) -> None:
        self.events.append("read closed")

    def writeConnectionLost(self) -> None:
        self.events.append("write closed")

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        self.reason = reason


def pair() -> Any:
    return connect_in_memory(
        Factory.forProtocol(Recorder), Factory.forProtocol(Recorder)
    )


class MemoryConnectionTests(SynchronousTestCase):
    def test_bytes_go_both_ways(self) -> None:
        client, server, pump = pair()
        client.transport.write(b"ping")
        server.transport.write(b"pong")
        pump.flush()
        self.assertEqual((server.received, client.received), ([b"ping"], [b"pong"]))

    def test_a_paused_reader_gets_nothing_until_resumed(self) -> None:
        client, server, pump = pair()
        server.transport.pauseProducing()
        client.transport.write(b"wait")
        pump.flush()
        self.assertEqual(server.received, [])
        server.transport.resumeProducing()
        pump.flush()
        self.assertEqual(server.received, [b"wait"])

    def test_half_close_comes_after_the_bytes(self) -> None:
        client, server, pump = pair()
        client.transport.write(b"last")
        client.transport.loseWriteConnection()
        pump.flush()
        self.assertEqual(server.received, [b"last"])
        self.assertEqual(server.events, ["read closed"])
        self.assertIsNone(server.reason)

    def test_close_is_clean_and_abort_is_not(self) -> None:
        client, server, pump = pair()
        server.transport.write(b"bye")
        server.transport.loseConnection()
        pump.flush()
        self.assertEqual(client.received, [b"bye"])
        self.assertTrue(client.reason.check(ConnectionDone))
        self.assertTrue(server.reason.check(ConnectionDone))
        client, server, pump = pair()
        client.transport.abortConnection()
        pump.flush()
        self.assertTrue(server.reason.check(ConnectionLost))
