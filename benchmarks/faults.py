"""
The shared chat's fault suite: three C{twistd -n sockproto chat --redis}
nodes on one real redis-server, line clients on each node in one room,
every client saying numbered lines at a steady rate, one fault at a time
injected as a failing infrastructure would, and every delivery recorded
and checked:

- no line lost outside the fault's outage window (from the fault's start
  to its end plus three heartbeats), none delivered twice, each sender's
  lines in order everywhere, and any two members agreeing on the order of
  what both received of the lines said outside the window (the column
  C{window} counts the pairs that disagree on lines said inside it: a line
  written to Redis as it stalls is shown at once to its own server's
  members, and to the others when Redis runs it, after it resumes);
- nobody falsely gone or back: no departure but of a killed or paused
  node's members (and never to themselves), no arrival after the start;
- every client of a node that was alone told so, and told when it is not
  any more; a killed node's members gone for everyone within three
  heartbeats.

Faults: C{stall} (redis-server stopped with SIGSTOP: connections open,
nothing answers), C{full} (maxmemory reached under noeviction: writes
refused), C{restart} (killed and started again, empty), C{pause} (a node
stopped with SIGSTOP past two heartbeats), C{kill} (a node killed with
SIGKILL), C{huge} (a 40 MB message on the room's channel, past Redis's
pub/sub output buffer), C{forge} (numbered messages forged on the room's
channel).

    python benchmarks/faults.py                   # every fault, 30 s each
    python benchmarks/faults.py --short           # CI's: 10 s each
    python benchmarks/faults.py --short --half 1  # half of them (CI runs
                                                  # both halves at once)

It exits 1 if any check fails, and prints one row per fault.
"""

import argparse
import os
import random
import signal
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from twisted.internet import task
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.protocols.basic import LineOnlyReceiver

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sockproto.chat.backends.redis.wire import encode_events  # noqa: E402
from sockproto.chat.events import ChatEvent  # noqa: E402
from sockproto.testing import RedisServer, start_twistd  # noqa: E402

FAULTS = ["stall", "full", "restart", "pause", "kill", "huge", "forge"]
HEARTBEAT = 1.0
TIMEOUT = 1.0
UNAVAILABLE = "chat network unavailable"
BACK = "chat network back"

Key = Tuple[str, int]


class Client(LineOnlyReceiver):
    """
    A line client: says numbered lines, records what it is shown.
    """

    delimiter = b"\r\n"
    MAX_LENGTH = 1 << 20

    def __init__(self, nick: str, node: int, clock: Any) -> None:
        self.nick, self.node, self.clock = nick, node, clock
        self.sent: List[Tuple[int, float]] = []
        self.got: List[Tuple[Key, float]] = []
        self.notices: List[Tuple[str, float]] = []
        self.number = 0
        self.named = False
        self.lost = False

    def connectionMade(self) -> None:
        self.sendLine(f"/nick {self.nick}".encode())

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = True

    def say(self) -> None:
        if self.named and not self.lost:
            self.number += 1
            self.sent.append((self.number, self.clock.seconds()))
            self.sendLine(f"{self.number}".encode())

    def lineReceived(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace")
        now = self.clock.seconds()
        if text.startswith("<"):
            nick, _, said = text[1:].partition("> ")
            if said.isdigit():
                self.got.append(((nick, int(said)), now))
            return
        if text.startswith("-!- "):
            self.notices.append((text[4:], now))
            if f"is now known as {self.nick}" in text:
                self.named = True


class Run:
    """
    One fault on a fresh cluster: redis-server, three nodes, clients.
    """

    stopped = float("inf")
    """When the traffic stopped."""

    def __init__(self, reactor: Any, fault: str, options: argparse.Namespace) -> None:
        self.reactor, self.fault, self.options = reactor, fault, options
        self.directory = tempfile.mkdtemp(prefix=f"sockproto-faults-{fault}-")
        config = ["--maxmemory-policy", "noeviction"]
        self.redis = RedisServer(self.directory, config=config)
        self.nodes: List[Any] = []
        self.clients: List[Client] = []
        self.window = (0.0, 0.0)
        self.gone: Set[int] = set()  # nodes killed or paused
        self.killedAt = 0.0

    @inlineCallbacks
    def start(self) -> Any:
        self.redis.start()
        args = [
            *("chat", "--listen", "tcp:0:interface=127.0.0.1"),
            *("--redis", self.redis.url, "--heartbeat", str(HEARTBEAT)),
            *("--redis-timeout", str(TIMEOUT), "--rate-limit", "0"),
            *("--max-per-peer", "0", "--history", "0"),
        ]
        self.nodes = yield gatherResults(
            [start_twistd(args, ["chat"], cwd=self.directory) for _ in range(3)]
        )
        connects = []
        for node, process in enumerate(self.nodes):
            host, port = process.address("chat")
            for i in range(self.options.clients):
                client = Client(f"c{node}x{i}", node, self.reactor)
                self.clients.append(client)
                endpoint = TCP4ClientEndpoint(self.reactor, host, port)
                connects.append(connectProtocol(endpoint, client))
        yield gatherResults(connects)
        deadline = self.reactor.seconds() + 10
        while not all(c.named for c in self.clients):
            if self.reactor.seconds() > deadline:
                raise RuntimeError("the clients were not all named in 10 s")
            yield task.deferLater(self.reactor, 0.05, lambda: None)

    @inlineCallbacks
    def traffic(self) -> Any:
        """
        Every client says a line at its own steady pace; the fault comes
        after a third of the run.
        """
        interval = len(self.clients) / self.options.rate
        loops = []
        for client in self.clients:
            loop = task.LoopingCall(client.say)
            loop.clock = self.reactor
            phase = random.random() * interval
            self.reactor.callLater(phase, loop.start, interval, now=True)
            loops.append(loop)
        duration = self.options.duration
        yield task.deferLater(self.reactor, duration / 3, lambda: None)
        start = self.reactor.seconds()
        progress(f"{self.fault}: injecting")
        yield self.inject()
        end = self.reactor.seconds()
        progress(f"{self.fault}: over")
        self.window = (start - 0.5, end + 3 * HEARTBEAT + TIMEOUT + 1)
        rest = max(duration * 2 / 3 - (end - start), self.window[1] - end + 2)
        yield task.deferLater(self.reactor, rest, lambda: None)
        for loop in loops:
            if loop.running:
                loop.stop()
        yield task.deferLater(self.reactor, 2.0, lambda: None)  # the last lines

    def wait(self, seconds: float) -> Any:
        return task.deferLater(self.reactor, seconds, lambda: None)

    @inlineCallbacks
    def inject(self) -> Any:
        fault, redis = self.fault, self.redis
        if fault == "stall":
            redis.pause()
            yield self.wait(3 * HEARTBEAT)
            redis.resume()
        elif fault == "full":
            redis.command("CONFIG", "SET", "maxmemory", "1")
            yield self.wait(3 * HEARTBEAT)
            redis.command("CONFIG", "SET", "maxmemory", "0")
        elif fault == "restart":
            redis.stop()
            yield self.wait(1.0)
            redis.start()
        elif fault == "pause":
            self.gone.add(2)
            self.nodes[2].transport.signalProcess(signal.SIGSTOP)
            yield self.wait(3 * HEARTBEAT)
            self.nodes[2].transport.signalProcess(signal.SIGCONT)
        elif fault == "kill":
            self.gone.add(2)
            self.killedAt = self.reactor.seconds()
            self.nodes[2].transport.signalProcess("KILL")
            yield self.wait(1.0)
        elif fault == "huge":
            redis.command("PUBLISH", "sockproto:room:lobby", b"1 " + b"x" * 40_000_000)
        elif fault == "forge":
            forged = encode_events([ChatEvent("message", "lobby", "c0x0", "0")])
            deadline = self.reactor.seconds() + 3 * HEARTBEAT
            while self.reactor.seconds() < deadline:
                seq = int(redis.command("GET", "sockproto:room:lobby:seq") or 0)
                for n in (1, 2, 3):
                    message = str(seq + n).encode() + b" " + forged
                    redis.command("PUBLISH", "sockproto:room:lobby", message)
                yield self.wait(0.02)

    @inlineCallbacks
    def stop(self) -> Any:
        for client in self.clients:
            if client.transport is not None:
                client.transport.loseConnection()
        for node in self.nodes:
            if not node.ended.called:
                node.transport.signalProcess(signal.SIGCONT)
        stops = [node.stop().addTimeout(15, self.reactor) for node in self.nodes]
        yield gatherResults(stops, consumeErrors=True).addErrback(lambda _: None)
        for node in self.nodes:
            if not node.ended.called:
                node.stop("KILL")
        self.redis.stop()

    # --- the checks ---------------------------------------------------------

    def check(self) -> Dict[str, Any]:
        start, end = self.window
        live = [c for c in self.clients if c.node not in self.gone]
        receivers = live if self.fault != "pause" else self.clients
        result: Dict[str, Any] = {"fault": self.fault}
        result["deliveries"] = sum(len(c.got) for c in self.clients)
        dup = reorder = 0
        for client in receivers:
            keys = [key for key, _ in client.got]
            dup += len(keys) - len(set(keys))
            last: Dict[str, int] = {}
            for nick, n in keys:
                if n <= last.get(nick, 0):
                    reorder += 1
                last[nick] = n
        result["duplicates"], result["reordered"] = dup, reorder
        # Lost: a line said outside the window by a live client, missing
        # at a live client.
        lost = 0
        outside = [
            (c.nick, n)
            for c in live
            for n, t in c.sent
            if not start <= t <= end and t < self.stopped - 1.0
        ]
        for client in live:
            got = {key for key, _ in client.got}
            lost += sum(1 for key in outside if key not in got)
        result["lost"], result["checked"] = lost, len(outside) * len(live)
        result["disagreements"] = self.disagreements(receivers, set(outside))
        result["window"] = self.disagreements(receivers, None)
        result["false"] = self.falseNotices()
        result["untold"] = self.untold()
        result["presence"] = self.presence()
        forged = ("c0x0", 0)  # what the forge fault says
        everything = [key for c in self.clients for key, _ in c.got]
        result["fake"] = everything.count(forged)
        return result

    def disagreements(
        self, receivers: Sequence[Client], only: Optional[Set[Key]]
    ) -> int:
        """
        Pairs of members that saw two lines in opposite orders (of the
        lines in C{only}, or all): each member against one member of
        every node.
        """
        firsts: Dict[int, Client] = {}
        for client in receivers:
            firsts.setdefault(client.node, client)
        bad = 0
        for client in receivers:
            mine = [key for key, _ in client.got]
            for other in firsts.values():
                if other is client:
                    continue
                theirs = [key for key, _ in other.got]
                common = set(mine) & set(theirs)
                if only is not None:
                    common &= only
                ours = [k for k in mine if k in common]
                if ours != [k for k in theirs if k in common]:
                    bad += 1
        return bad

    def falseNotices(self) -> List[str]:
        nicks = {c.nick for c in self.clients}
        goneNicks = {c.nick for c in self.clients if c.node in self.gone}
        false = []
        for client in self.clients:
            for text, _ in client.notices:
                who = text.split(" ", 1)[0]
                if who not in nicks:
                    continue
                if " left #" in text and (who not in goneNicks or who == client.nick):
                    false.append(f"{client.nick}: {text}")
                elif text.endswith(" joined #lobby") and who not in goneNicks:
                    false.append(f"{client.nick}: {text}")
        return false

    def untold(self) -> List[str]:
        """
        Clients that served alone and were not told, or not told the end.
        """
        if self.fault not in ("stall", "full", "restart", "pause"):
            return []
        affected = self.clients
        if self.fault == "pause":
            affected = [c for c in self.clients if c.node == 2]
        untold = []
        for client in affected:
            texts = [text for text, _ in client.notices]
            alone = [i for i, t in enumerate(texts) if t.startswith(UNAVAILABLE)]
            back = [i for i, t in enumerate(texts) if t.startswith(BACK)]
            if not alone or not back or back[-1] < alone[-1]:
                untold.append(client.nick)
        return untold

    def presence(self) -> Optional[float]:
        """
        For C{kill}: seconds until every live member saw every member of
        the killed node leave (at most three heartbeats is right).
        """
        if self.fault != "kill":
            return None
        goneNicks = {c.nick for c in self.clients if c.node in self.gone}
        latest = 0.0
        for client in self.clients:
            if client.node in self.gone:
                continue
            seen = {
                text.split(" ", 1)[0]: t
                for text, t in client.notices
                if " left #lobby" in text
            }
            for nick in goneNicks:
                if nick not in seen:
                    return float("inf")
                latest = max(latest, seen[nick] - self.killedAt)
        return latest


def progress(text: str) -> None:
    print(f"faults: {text}", file=sys.stderr, flush=True)


def passed(result: Dict[str, Any]) -> bool:
    ok = (
        result["lost"] == 0
        and result["duplicates"] == 0
        and result["reordered"] == 0
        and result["disagreements"] == 0
        and not result["false"]
        and not result["untold"]
        and result["fake"] == 0
    )
    if result["presence"] is not None:
        ok = ok and result["presence"] <= 3 * HEARTBEAT + 0.5
    return ok


@inlineCallbacks
def main(reactor: Any, argv: Sequence[str]) -> Any:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="CI's short run")
    parser.add_argument("--half", type=int, choices=(1, 2), help="half the faults")
    parser.add_argument("--only", help="comma-separated faults: " + ",".join(FAULTS))
    parser.add_argument("--clients", type=int, help="clients per node")
    parser.add_argument("--rate", type=float, help="lines a second, in all")
    parser.add_argument("--duration", type=float, help="seconds per fault")
    options = parser.parse_args(argv)
    if not RedisServer.available():
        print("faults: redis-server is missing (Debian: apt-get install redis-server)")
        return 1
    short = options.short
    options.clients = options.clients or (6 if short else 30)
    options.rate = options.rate or (60.0 if short else 270.0)
    options.duration = options.duration or (10.0 if short else 30.0)
    faults = options.only.split(",") if options.only else FAULTS
    if options.half:
        faults = faults[options.half - 1 :: 2]
    columns = (
        "fault deliveries checked lost duplicates reordered disagreements"
        " window fake false untold presence"
    ).split()
    print(" | ".join(columns))
    failures = 0
    for fault in faults:
        run = Run(reactor, fault, options)
        try:
            progress(f"{fault}: starting redis-server and three nodes")
            yield run.start()
            progress(f"{fault}: traffic, then the fault")
            yield run.traffic()
            run.stopped = reactor.seconds()
        finally:
            progress(f"{fault}: stopping")
            yield run.stop()
        result = run.check()
        row = []
        for column in columns:
            value = result[column]
            if isinstance(value, list):
                value = len(value)
            if isinstance(value, float):
                value = f"{value:.1f} s"
            row.append(str(value if value is not None else "-"))
        verdict = "ok" if passed(result) else "FAILED"
        print(" | ".join(row) + f" | {verdict}", flush=True)
        if verdict != "ok":
            failures += 1
            for line in (result["false"] + result["untold"])[:10]:
                print(f"    {line}")
    return 1 if failures else 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.monotonic()

    def run(reactor: Any) -> Any:
        d = main(reactor, sys.argv[1:])

        def done(status: int) -> None:
            print(f"faults: {time.monotonic() - started:.0f} s")
            if status:
                raise SystemExit(status)

        return d.addCallback(done)

    task.react(run)
