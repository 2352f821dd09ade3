"""
The RESP client: encoding, and replies parsed the same whatever the
chunking (hypothesis), over a StringTransport.
"""

from typing import Any, List

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from sockproto.chat.backends.redis.resp import (
    RedisError,
    encode_command,
    parse_redis_url,
)

try:
    import hiredis  # noqa: F401
except ImportError:
    hiredis = None

REPLIES = (
    b"+OK\r\n"
    b":42\r\n"
    b"$5\r\nhello\r\n"
    b"$-1\r\n"
    b"*2\r\n$1\r\na\r\n:1\r\n"
    b"-ERR wrong\r\n"
    b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nhi!\r\n"
    b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
)


def split(data: bytes, cuts: List[int]) -> List[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:])]


class EncodeTests(SynchronousTestCase):
    def test_a_command_is_an_array_of_bulk_strings(self) -> None:
        self.assertEqual(
            encode_command(("SET", b"k\r\n", 7, "é")),
            b"*4\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$1\r\n7\r\n$2\r\n\xc3\xa9\r\n",
        )


class UrlTests(SynchronousTestCase):
    def test_redis_urls(self) -> None:
        address = parse_redis_url("redis://:s%40cret@db.example:6380/2")
        self.assertEqual(
            (address.host, address.port, address.db, address.password),
            ("db.example", 6380, 2, "s@cret"),
        )
        address = parse_redis_url("redis://localhost")
        self.assertEqual((address.port, address.db, address.password), (6379, 0, None))

    def test_tls_urls(self) -> None:
        address = parse_redis_url("rediss://:pw@cache.example:6380/2")
        self.assertEqual((address.tls, address.ca, address.port), (True, None, 6380))
        self.assertEqual(str(address), "rediss://cache.example:6380 db 2")
        self.assertFalse(parse_redis_url("redis://cache.example").tls)

    def test_unix_urls(self) -> None:
        address = parse_redis_url("unix:///run/redis.sock?db=3")
        self.assertEqual((address.path, address.db), ("/run/redis.sock", 3))
        self.assertEqual(str(address), "unix:///run/redis.sock db 3")

    def test_bad_urls_say_why(self) -> None:
        for url, reason in [
            ("http://x", "is not a redis://, rediss:// or unix:// URL"),
            ("redis://h:port", "bad port"),
            ("rediss://h?ca=/no/such/ca.pem", "no CA file '/no/such/ca.pem'"),
            ("redis://h?ca=/etc/hostname", "?ca= goes with rediss:// (TLS)"),
            ("redis://h/x", "bad database number"),
            ("unix://", "no socket path"),
        ]:
            with self.assertRaises(ValueError) as caught:
                parse_redis_url(url)
            self.assertIn(reason, str(caught.exception))


class ProtocolTests(SynchronousTestCase):
    def setUp(self) -> None:
        if hiredis is None:
            raise SkipTest("hiredis missing: pip install 'sockproto[redis]'")
        from sockproto.chat.backends.redis.resp import RedisProtocol

        self.protocol = RedisProtocol()
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.messages: List[Any] = []
        self.protocol.messageReceived = lambda c, m: self.messages.append((c, m))

    def sendAll(self) -> List[Any]:
        results: List[Any] = []
        for _ in range(7):  # replies, not counting the pushed message
            d = self.protocol.execute("PING")
            d.addBoth(results.append)
        return results

    def check(self, results: List[Any]) -> None:
        self.assertEqual(results[:5], [b"OK", 42, b"hello", None, [b"a", 1]])
        self.assertIsInstance(results[5], Failure)
        results[5].trap(RedisError)
        self.assertEqual(results[6], [b"pong", b""])
        self.assertEqual(self.messages, [(b"ch", b"hi!")])

    @given(st.lists(st.integers(min_value=0), max_size=30))
    def test_any_chunking_gives_the_same_replies(self, cuts: List[int]) -> None:
        self.setUp()  # a new connection for each example
        results = self.sendAll()
        for piece in split(REPLIES, cuts):
            self.protocol.dataReceived(piece)
        self.check(results)

    def test_commands_are_written_at_once_in_order(self) -> None:
        self.protocol.execute("GET", "a")
        self.protocol.execute("GET", "b")
        self.assertEqual(
            self.transport.value(),
            encode_command(("GET", "a")) + encode_command(("GET", "b")),
        )

    def test_a_lost_connection_fails_every_waiting_command(self) -> None:
        results: List[Any] = []
        self.protocol.execute("GET", "a").addBoth(results.append)
        self.protocol.connectionLost(Failure(ConnectionDone()))
        results[0].trap(ConnectionLost)
        late: List[Any] = []
        self.protocol.execute("GET", "b").addBoth(late.append)
        late[0].trap(ConnectionLost)

    def test_a_command_unanswered_past_its_deadline_drops_the_connection(
        self,
    ) -> None:
        clock = Clock()
        aborted: List[bool] = []
        self.transport.abortConnection = lambda: aborted.append(True)  # type: ignore
        self.protocol.watch(clock, 3.0)
        self.protocol.execute("GET", "a")
        clock.advance(2)
        self.protocol.execute("GET", "b")
        self.protocol.dataReceived(b"$1\r\nA\r\n")  # a's reply; b waits
        clock.advance(2.5)
        self.assertEqual(aborted, [])  # b has waited 2.5 s
        clock.advance(0.5)
        self.assertEqual(aborted, [True])

    def test_a_connection_without_a_deadline_waits(self) -> None:
        clock = Clock()
        self.protocol.watch(clock, 0)
        self.protocol.execute("GET", "a")
        clock.advance(3600)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_a_reply_longer_than_the_bound_drops_the_connection(self) -> None:
        aborted: List[bool] = []
        self.transport.abortConnection = lambda: aborted.append(True)  # type: ignore
        self.protocol.maxReply = 1000
        self.protocol.dataReceived(b"$5000\r\n" + b"x" * 600)
        self.assertEqual(aborted, [])
        self.protocol.dataReceived(b"x" * 600)
        self.assertEqual(aborted, [True])
        self.protocol.dataReceived(b"x" * 600)  # still in flight: ignored

    def test_an_unreadable_reply_closes_the_connection(self) -> None:
        self.protocol.dataReceived(b"?what\r\n")
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(len(self.flushLoggedErrors()), 1)
