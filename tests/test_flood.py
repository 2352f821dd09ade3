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
from sockproto.chat.frontends.web.protocol import WebChatFactory
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

# The same, on the web port, as WebSocket clients: MODE "ping" sends
# pings and never reads; "fragments" sends a message in 1-byte frames.
WEB_FLOODER = r"""
import base64, os, socket, struct, sys
port, connections, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]

def frame(opcode, payload, fin=True):
    head = bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)])
    return head + b"\0\0\0\0" + payload  # a zero mask: the payload as is

def connect():
    s = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    s.recv(4096)
    return s

if mode == "ping":
    flood = frame(0x9, b"p" * 125) * 512
else:
    flood = frame(0x1, b"{", fin=False) + frame(0x0, b" ", fin=False) * 8192
socks = []
while True:
    while len(socks) < connections:
        try:
            socks.append(connect())
        except OSError:
            pass
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

    def test_flooders_barely_change_another_clients_round_trip(self) -> Any:
        factory = ChatFactory(rateLimit=100)
        return self.flooded(factory, factory, FLOODER, [])

    def test_websocket_ping_flooders_are_dropped_and_change_little(self) -> Any:
        factory = ChatFactory(rateLimit=100)
        web = WebChatFactory(factory)
        d = self.flooded(factory, web, WEB_FLOODER, ["ping"])
        d.addCallback(lambda _: self.assertTrue(web.drops, web.drops))
        return d

    def test_websocket_fragment_flooders_are_dropped_and_change_little(self) -> Any:
        factory = ChatFactory(rateLimit=100)
        web = WebChatFactory(factory)
        d = self.flooded(factory, web, WEB_FLOODER, ["fragments"])
        d.addCallback(lambda _: self.assertTrue(web.drops, web.drops))
        return d

    @inlineCallbacks
    def flooded(
        self, factory: ChatFactory, target: Any, flooder: str, args: List[str]
    ) -> Any:
        """
        Measure a line client's round trip on C{factory}'s port, then with
        4 C{flooder}s on C{target}'s: the ratio stays under L{MAX_RATIO}.
        """
        server = yield listen_on_loopback(factory)
        self.addCleanup(server.stop)
        floodServer = server
        if target is not factory:
            floodServer = yield listen_on_loopback(target)
            self.addCleanup(floodServer.stop)
        client = yield connect_line_client(server.endpoint())
        client.send("/join quiet")
        yield client.expect("joined #quiet")
        yield self.roundTrips(client, "warm-up")
        quiet = yield self.roundTrips(client, "quiet")

        flooders = Flooders()
        port = floodServer.port.getHost().port
        process = reactor.spawnProcess(  # type: ignore[attr-defined]
            flooders,
            sys.executable,
            [sys.executable, "-c", flooder, str(port), "4"] + args,
            env=os.environ.copy(),
        )
        try:
            from sockproto.testing import wait_for

            # Flooders come and go (excess flood); count the arrivals.
            yield wait_for(lambda: target.stats.accepted > 4, 30)
            yield self.roundTrips(client, "warm-up-flooded")
            # The best of three measures: a noisy machine only adds latency,
            # so the lowest median is the nearest to what flooding costs.
            flooded = float("inf")
            for attempt in range(3):
                median = yield self.roundTrips(client, f"flooded {attempt}")
                flooded = min(flooded, median)
                if flooded / quiet < MAX_RATIO:
                    break
            floods = len(target.connections)
        finally:
            process.signalProcess("KILL")
            yield flooders.ended
        ratio = flooded / quiet
        print(
            f"\nround trip: {quiet * 1e3:.2f} ms quiet, {flooded * 1e3:.2f} ms"
            f" with 4 flooders ({ratio:.1f}x, {floods} connections open,"
            f" dropped: {target.drops})"
        )
        self.assertLess(ratio, MAX_RATIO)
        client.transport.loseConnection()
        yield client.closed
