"""
Floods over real loopback sockets: a client sending far over the rate
limit must not slow down the others.  The flooders run in another process,
as an attacker would; the measure is the ratio of another client's round
trip with and without them, in the same test.
"""

import os
import statistics
import sys
import time
from typing import Any, List

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import TestCase

from sockproto.chat import ChatFactory
from sockproto.testing import LineClient, connect_line_client, listen_on_loopback

FLOODER = r"""
import socket, sys
port, connections = int(sys.argv[1]), int(sys.argv[2])
flood = b"a\n" * 32768
socks = []
while True:
    while len(socks) < connections:
        socks.append(socket.create_connection(("127.0.0.1", port)))
    for s in list(socks):
        try:
            s.sendall(flood)
        except OSError:
            socks.remove(s)
            s.close()
"""

ROUNDS = 40
MAX_RATIO = 10.0
"""How many times the unflooded round trip a flooded one may take."""


class Flooders(ProcessProtocol):
    def __init__(self) -> None:
        from twisted.internet.defer import Deferred

        self.ended: Deferred[None] = Deferred()

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


class FloodTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def roundTrips(self, client: LineClient, label: str) -> Any:
        times: List[float] = []
        for n in range(ROUNDS):
            start = time.perf_counter()
            client.send(f"{label} {n}")
            yield client.expect(f"> {label} {n}")
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    @inlineCallbacks
    def test_flooders_barely_change_another_clients_round_trip(self) -> Any:
        factory = ChatFactory(rateLimit=100)
        server = yield listen_on_loopback(factory)
        self.addCleanup(server.stop)
        client = yield connect_line_client(server.endpoint())
        client.send("/join quiet")
        yield client.expect("joined #quiet")
        yield self.roundTrips(client, "warm-up")
        quiet = yield self.roundTrips(client, "quiet")

        flooders = Flooders()
        port = server.port.getHost().port
        process = reactor.spawnProcess(  # type: ignore[attr-defined]
            flooders,
            sys.executable,
            [sys.executable, "-c", FLOODER, str(port), "4"],
            env=os.environ.copy(),
        )
        try:
            from sockproto.testing import wait_for

            # Flooders come and go (excess flood); count the arrivals.
            yield wait_for(lambda: factory.stats.accepted > 4, 30)
            yield self.roundTrips(client, "warm-up-flooded")
            # The best of three measures: a noisy machine only adds latency,
            # so the lowest median is the nearest to what flooding costs.
            flooded = float("inf")
            for attempt in range(3):
                median = yield self.roundTrips(client, f"flooded {attempt}")
                flooded = min(flooded, median)
                if flooded / quiet < MAX_RATIO:
                    break
            floods = len([p for p in factory.connections if p is not None])
        finally:
            process.signalProcess("KILL")
            yield flooders.ended
        ratio = flooded / quiet
        print(
            f"\nround trip: {quiet * 1e3:.2f} ms quiet, {flooded * 1e3:.2f} ms"
            f" with 4 flooders ({ratio:.1f}x, {floods} connections open)"
        )
        self.assertLess(ratio, MAX_RATIO)
        client.transport.loseConnection()
        yield client.closed
