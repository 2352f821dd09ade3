"""
Why sockproto has its own small Redis client: it and txredisapi measured
side by side, against one private redis-server, in one run.

    pip install txredisapi==1.6.0   # only for this comparison
    python benchmarks/redis_clients.py [--messages N]

For each client: commands (INCR, pipelined 1,000 at a time) a second, and
pub/sub messages (200 bytes, published 1,000 at a time by the same client)
received a second by a subscriber of the same client.  The medians of 5
interleaved rounds are printed with their ratio.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import UNIXClientEndpoint

from sockproto.chat.backends.redis.resp import RedisLink, parse_redis_url
from sockproto.testing import RedisServer

BURST = 1000
PAYLOAD = b"x" * 200


class Ours:
    name = "sockproto.resp"

    @defer.inlineCallbacks
    def start(self, url: str) -> Any:
        self.link = RedisLink(parse_redis_url(url), reactor)
        self.received = 0
        self.link.onMessage = self._message
        self.link.startService()
        while not self.link.up:
            yield task.deferLater(reactor, 0.01, lambda: None)
        yield self.link.subscribe(b"bench")

    def _message(self, channel: bytes, message: bytes) -> None:
        self.received += 1

    def command(self, *args: Any) -> "defer.Deferred[Any]":
        return self.link.execute(*args)

    def stop(self) -> Any:
        return self.link.stopService()


class TxRedisApi:
    name = "txredisapi"

    @defer.inlineCallbacks
    def start(self, url: str) -> Any:
        import txredisapi

        path = parse_redis_url(url).path
        outer = self

        class Subscriber(txredisapi.SubscriberProtocol):  # type: ignore[misc]
            def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
                outer.received += 1

        self.received = 0
        factory = txredisapi.SubscriberFactory()
        factory.protocol = Subscriber
        factory.startConnecting(UNIXClientEndpoint(reactor, path))
        self.subscriber = yield factory.deferred
        yield self.subscriber.subscribe("bench")
        self.connection = yield txredisapi.UnixConnection(path, reconnect=False)

    def command(self, *args: Any) -> "defer.Deferred[Any]":
        return self.connection.execute_command(*args)

    @defer.inlineCallbacks
    def stop(self) -> Any:
        yield self.connection.disconnect()
        yield self.subscriber.disconnect()


@defer.inlineCallbacks
def commands_per_second(client: Any, count: int) -> Any:
    started = time.perf_counter()
    for _ in range(count // BURST):
        yield defer.gatherResults([client.command("INCR", "n") for _ in range(BURST)])
    return count / (time.perf_counter() - started)


@defer.inlineCallbacks
def messages_per_second(client: Any, count: int) -> Any:
    client.received = 0
    started = time.perf_counter()
    for _ in range(count // BURST):
        publishes = [client.command("PUBLISH", "bench", PAYLOAD) for _ in range(BURST)]
        yield defer.gatherResults(publishes)
    while client.received < count:
        yield task.deferLater(reactor, 0.001, lambda: None)
    return count / (time.perf_counter() - started)


@defer.inlineCallbacks
def run(count: int, rounds: int) -> Any:
    directory = tempfile.mkdtemp(prefix="sockproto-bench-redis-")
    server = RedisServer(directory)
    server.start()
    makers: List[Callable[[], Any]] = [Ours]
    try:
        import txredisapi  # noqa: F401

        makers.append(TxRedisApi)
    except ImportError:
        print("txredisapi is not installed: measuring sockproto.resp alone")
    results: Dict[str, Dict[str, List[float]]] = {}
    try:
        for _ in range(rounds):
            for make in makers:
                client = make()
                yield client.start(server.url)
                row = results.setdefault(client.name, {"commands": [], "messages": []})
                row["commands"].append((yield commands_per_second(client, count)))
                row["messages"].append((yield messages_per_second(client, count)))
                yield client.stop()
    finally:
        server.stop()
    base = {
        key: statistics.median(values) for key, values in results[Ours.name].items()
    }
    implementation = sys.implementation.name
    print(f"{implementation} {sys.version.split()[0]}, {os.cpu_count()} cores")
    print("client              commands/s   ratio   pub/sub messages/s   ratio")
    for name, row in results.items():
        commands = statistics.median(row["commands"])
        messages = statistics.median(row["messages"])
        print(
            f"{name:18} {commands:11.0f} {commands / base['commands']:6.2f}x"
            f" {messages:20.0f} {messages / base['messages']:6.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    task.react(lambda _: run(options.messages, options.rounds))


if __name__ == "__main__":
    main()
