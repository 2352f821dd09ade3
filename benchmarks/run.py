"""
sockproto's benchmarks: every server and its peers, driven by the same load
generator in one run, with the ratios printed side by side.

    python benchmarks/run.py [--quick] [--results DIR]

It compiles benchmarks/loadgen.c and benchmarks/c_echo.c with the system's
C compiler, runs each server in a child process pinned to CPU 0 and the load
generator pinned to CPU 1, and writes a JSON file (and a PNG chart when
matplotlib is installed) into benchmarks/results/, which is not committed.
"""

import argparse
import functools
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
LOOPBACK = "127.0.0.1"
SERVER_CPU, LOADGEN_CPU = {0}, {1}


def build(results: Path) -> Dict[str, str]:
    """
    Compile the load generator and the C echo server.
    """
    out = results / "build"
    out.mkdir(parents=True, exist_ok=True)
    programs = {}
    for name in ["loadgen", "c_echo"]:
        target = out / name
        command = ["cc", "-O2", "-o", str(target), str(HERE / f"{name}.c")]
        subprocess.run(command, check=True)
        programs[name] = str(target)
    return programs


def pin(cpus: set) -> Callable[[], None]:
    def apply() -> None:
        if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
            os.sched_setaffinity(0, cpus)

    return apply


class Server:
    """
    A server in a child process, with the port it reported.
    """

    def __init__(
        self,
        name: str,
        command: List[str],
        pattern: str,
        cpus: set = SERVER_CPU,
        env: Optional[Dict[str, str]] = None,
    ) -> None:
        self.name = name
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=pin(cpus),
            cwd=str(HERE),
            env=env,
        )
        self.port = self._wait_for_port(re.compile(pattern))

    def _wait_for_port(self, pattern: "re.Pattern[str]") -> int:
        assert self.process.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.process.stdout.readline().decode("utf-8", "replace")
            if not line and self.process.poll() is not None:
                break
            match = pattern.search(line)
            if match:
                self._drain()
                return int(match.group(1))
        raise RuntimeError(f"{self.name} did not start")

    def _drain(self) -> None:
        # Keep reading its output so that logging never blocks it.
        import threading

        def read() -> None:
            assert self.process.stdout is not None
            for _ in self.process.stdout:
                pass

        threading.Thread(target=read, daemon=True).start()

    def rss_kib(self) -> int:
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        """
        The CPU time (user and system) the server has used so far.
        """
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def mark(self) -> Tuple[float, float]:
        """
        The time now, and the server's CPU time so far: where L{busy_since}
        starts.
        """
        return time.monotonic(), self.cpu_seconds()

    def busy_since(self, mark: Tuple[float, float]) -> float:
        """
        The server's CPU time since C{mark}, over the wall time since then.
        """
        now, cpu = self.mark()
        return (cpu - mark[1]) / (now - mark[0])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


OTHER_PYTHON: Optional[str] = None
"""--python: another interpreter (its virtual environment) for extra rows."""


def twistd(*args: str, python: Optional[str] = None) -> List[str]:
    script = Path(python or sys.executable).parent / "twistd"
    return [str(script), "-n", "--pidfile=", "--logfile=/dev/null", "sockproto", *args]


PYPY_GC_NURSERY = "16MB"
"""The young generation of PyPy's GC in the PyPy rows (unless the environment
sets PYPY_GC_NURSERY): PyPy sizes it from the L2 cache, 1 MB here, and with
that a busy chat promotes what is in flight to the old generation, whose
collections then stall it (p99 near or above 100 ms from 12,000 lines/s)."""


def server_env(python: Optional[str]) -> Optional[Dict[str, str]]:
    """
    The environment of a server run by C{python}: PyPy gets its nursery.
    """
    if python is None or not implementation(python).startswith("PyPy"):
        return None
    return {"PYPY_GC_NURSERY": PYPY_GC_NURSERY, **os.environ}


@functools.cache
def implementation(python: str) -> str:
    """
    A short name of the interpreter at C{python}, as "PyPy 3.9.16".
    """
    code = "import platform as p; print(p.python_implementation(), p.python_version())"
    return subprocess.run(
        [python, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


LISTEN = f"tcp:0:interface={LOOPBACK}:backlog=1024"
# Every feature of the chat stays on: the rate limit counts each line, with
# a limit (lines a second per client) that no run here reaches, so that it
# costs what it costs and slows nobody.  Every client comes from one address.
RATE_LIMIT = ("--rate-limit", "1000")
CHAT_LIMITS = (*RATE_LIMIT, "--max-per-peer", "0")


def sockproto_echo(python: Optional[str] = None) -> Server:
    # twistd logs to /dev/null here, so the port comes from the service's
    # own line on standard output: run with logging to stdout instead.
    command = twistd("echo", "--listen", LISTEN, "--max-per-peer", "0", python=python)
    command.remove("--logfile=/dev/null")
    label = "sockproto echo" + (f" ({implementation(python)})" if python else "")
    pattern = r"echo listening on [\d.]+:(\d+)"
    return Server(label, command, pattern, env=server_env(python))


def sockproto_chat(python: Optional[str] = None) -> Server:
    command = twistd("chat", "--listen", LISTEN, *CHAT_LIMITS, python=python)
    command.remove("--logfile=/dev/null")
    label = "sockproto chat" + (f" ({implementation(python)})" if python else "")
    pattern = r"chat listening on [\d.]+:(\d+)"
    return Server(label, command, pattern, env=server_env(python))


def warm_echo(programs: Dict[str, str], server: Server) -> Server:
    """
    C{server} (on another interpreter), after a second of each load: a JIT
    compiles the hot paths first.
    """
    loadgen(programs, "echo", LOOPBACK, server.port, 10, 64, 1, 1.0)
    loadgen(programs, "echo", LOOPBACK, server.port, 10, 65536, 4, 1.0)
    return server


QUIET = 1.0
"""Seconds between two load generator runs on one server: the clients of the
first are gone before the next connect (ncat quits when one it accepts has
already gone: 'getpeername ... failed ... QUITTING')."""


def warm_chat(programs: Dict[str, str], server: Server, hello: str) -> None:
    """
    Twice 2 seconds of 500 clients at 4,000 lines/s, each with clients of
    its own, before a chat server is measured: what is measured is a
    long-running server, not a new one.  A JIT compiles the hot paths
    first; every server, JIT or not, is warmed the same way.
    """
    for _ in range(2):
        try:
            loadgen(programs, "chat", LOOPBACK, server.port, 500, 4000, 2.0, hello)
        except RuntimeError:
            pass  # overloaded, or it fell over: the measured runs say so
        time.sleep(QUIET)


@contextmanager
def warmed(
    programs: Dict[str, str], start: Callable[[], Optional[Server]], hello: str
) -> Iterator[Optional[Server]]:
    """
    A chat server from C{start}, warmed, stopped on the way out; None if it
    is not installed.
    """
    server = start()
    if server is None:
        yield None
        return
    try:
        warm_chat(programs, server, hello)
        yield server
    finally:
        server.stop()


def peer(name: str, label: str) -> Server:
    command = [sys.executable, str(HERE / "peers.py"), name]
    return Server(label, command, r"listening on (\d+)")


def c_echo(programs: Dict[str, str]) -> Server:
    return Server(
        "C echo (reference)", [programs["c_echo"], "0"], r"listening on (\d+)"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def ncat_chat() -> Optional[Server]:
    ncat = shutil.which("ncat")
    if ncat is None:
        return None
    port = free_port()
    command = [
        "sh",
        "-c",
        f"echo listening on {port}; exec {ncat} --chat -m 100000 -l {LOOPBACK} {port}",
    ]
    server = Server("ncat --chat", command, r"listening on (\d+)")
    time.sleep(0.5)
    return server


def loadgen(
    programs: Dict[str, str], *args: Any, watch: Optional[Server] = None
) -> Dict[str, Any]:
    """
    The load generator's result (its last line of output).  With C{watch},
    also how busy that server was (C{server_cpu}: its CPU time over the wall
    time) from a chat run's "measuring" line to the result: the server's
    cost at that rate, whoever's limit it is.
    """
    command = [programs["loadgen"], *[str(a) for a in args]]
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=pin(LOADGEN_CPU),
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        began: Optional[Tuple[float, float]] = None
        last = ""
        for line in process.stdout:
            if line.startswith("measuring"):
                began = watch.mark() if watch is not None else None
            elif line.strip():
                last = line
        busy = watch.busy_since(began) if watch is not None and began else None
        error = process.stderr.read()
        process.wait(300)
    if not last:
        # What it says is one line: "connect: Connection refused"; "write:
        # Connection reset by peer" (the server dropped a client, as a chat
        # drops one that does not read fast enough).
        raise RuntimeError(f"loadgen: {error.strip()}")
    result = dict(json.loads(last))
    if busy is not None:
        result["server_cpu"] = busy
    return result


# --- echo -----------------------------------------------------------------


def echo_runs(
    programs: Dict[str, str], rounds: int, seconds: float
) -> Dict[str, Dict[str, Any]]:
    """
    Small and bulk echo for each server, in interleaved rounds; medians.
    """
    servers = [sockproto_echo()]
    if OTHER_PYTHON is not None:
        servers.append(warm_echo(programs, sockproto_echo(OTHER_PYTHON)))
    servers += [
        peer("wire-echo", "twisted wire.Echo"),
        peer("asyncio-echo", "asyncio echo"),
        c_echo(programs),
    ]
    results: Dict[str, Dict[str, List[Dict[str, Any]]]] = {
        s.name: {"small": [], "bulk": []} for s in servers
    }
    try:
        for _ in range(rounds):
            for server in servers:
                small = echo_run(programs, server, 64, 1, seconds)
                bulk = echo_run(programs, server, 65536, 4, seconds)
                results[server.name]["small"].append(small)
                results[server.name]["bulk"].append(bulk)
    finally:
        for server in servers:
            server.stop()
    summary = {}
    for name, runs in results.items():
        summary[name] = {
            "round_trips_per_second": median(runs["small"], "round_trips_per_second"),
            "p50_us": median(runs["small"], "p50_us"),
            "p99_us": median(runs["small"], "p99_us"),
            "mb_per_second": median(runs["bulk"], "mb_per_second"),
            "loadgen_cpu": max(r["loadgen_cpu"] for r in runs["small"] + runs["bulk"]),
            "server_cpu": max(r["server_cpu"] for r in runs["small"] + runs["bulk"]),
            "errors": sum(
                r["errors"] + r["unanswered"] for r in runs["small"] + runs["bulk"]
            ),
            "runs": runs,
        }
    return summary


def echo_run(
    programs: Dict[str, str], server: Server, size: int, inflight: int, seconds: float
) -> Dict[str, Any]:
    """
    One echo run of 10 connections, with how busy the server was.
    """
    began = server.mark()
    result = loadgen(
        programs, "echo", LOOPBACK, server.port, 10, size, inflight, seconds
    )
    return {**result, "server_cpu": server.busy_since(began)}


def median(runs: List[Dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


# --- chat -----------------------------------------------------------------


Starter = Tuple[str, Callable[[], Optional[Server]], str]


def chat_servers(programs: Dict[str, str]) -> List[Starter]:
    """
    Every chat server measured: its label, how to start it, and how it
    greets a client (the load generator's HELLO).
    """
    starters: List[Tuple[str, Callable[[], Optional[Server]], str]] = [
        ("sockproto chat", sockproto_chat, "none"),
    ]
    if OTHER_PYTHON is not None:
        other = OTHER_PYTHON
        starters.append(
            (
                f"sockproto chat ({implementation(other)})",
                lambda: sockproto_chat(other),
                "none",
            )
        )
    starters += [
        (
            "twisted chat example",
            lambda: peer("twisted-chat", "twisted chat example"),
            "silent",
        ),
        ("ncat --chat", ncat_chat, "none"),
    ]
    return starters


def chat_runs(
    programs: Dict[str, str], sizes: List[int], rates: List[int], seconds: float
) -> List[Dict[str, Any]]:
    """
    Fan-out for each chat server, client count and offered rate: one server
    each, warmed, measured at every size and rate in turn.
    """
    rows = []
    for label, start, hello in chat_servers(programs):
        with warmed(programs, start, hello) as server:
            for clients in sizes:
                for rate in rates:
                    if server is None:
                        row = {
                            "clients": clients,
                            "rate": rate,
                            "missing": "not installed",
                        }
                    else:
                        row = chat_trial(
                            programs, server, hello, clients, rate, seconds, 0
                        )
                    rows.append({"server": label, **row})
    return rows


def scale_run(programs: Dict[str, str], clients: int) -> Dict[str, Any]:
    """
    C{clients} idle chat clients: server memory per client, and how long
    one line takes to reach all of them.
    """
    server = sockproto_chat()
    try:
        time.sleep(0.5)
        before = server.rss_kib()
        command = [
            programs["loadgen"],
            "idle",
            LOOPBACK,
            str(server.port),
            str(clients),
            "none",
        ]
        gen = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=pin(LOADGEN_CPU),
        )
        assert gen.stdout is not None and gen.stdin is not None
        ready = gen.stdout.readline()
        if not ready:
            raise RuntimeError("idle clients did not connect")
        time.sleep(1.0)
        after = server.rss_kib()
        gen.stdin.write("go\n")
        gen.stdin.flush()
        result = json.loads(gen.stdout.readline())
        gen.wait(60)
    finally:
        server.stop()
    return {
        "clients": clients,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "rss_per_client_kib": (after - before) / clients,
        **result,
    }


# --- several processes: --workers, and the chat shared through Redis -------

BOTH_CPUS = {0, 1}
SUSTAINABLE_P99_MS = 100.0


def workers_server(service: str, workers: int, *extra: str) -> Server:
    """
    C{twistd sockproto SERVICE --workers N}, on both cores (the workers of
    one process share them with the load generator).
    """
    command = twistd(service, "--listen", LISTEN, "--max-per-peer", "0", *extra)
    command.remove("--logfile=/dev/null")
    if workers > 1:
        command += ["--workers", str(workers)]
    pattern = service + r" listening on [\d.]+:(\d+)"
    label = f"sockproto {service}, " + (
        f"{workers} workers" if workers > 1 else "1 process"
    )
    server = Server(label, command, pattern, cpus=BOTH_CPUS)
    time.sleep(2.0 if workers > 1 else 0.5)  # workers adopt the port
    return server


def chat_trial(
    programs: Dict[str, str],
    server: Server,
    hello: str,
    clients: int,
    rate: int,
    seconds: float,
    settle: float = 2,
) -> Dict[str, Any]:
    """
    One run of C{clients} chat clients at C{rate} lines/s offered in all,
    on a running C{server}; a server that falls over is a result too.
    """
    try:
        result = loadgen(
            programs,
            "chat",
            LOOPBACK,
            server.port,
            clients,
            rate,
            seconds,
            hello,
            settle,
            watch=server,
        )
    except Exception as e:
        result = {"error": str(e), "complete": False, "p99_ms": float("inf")}
    time.sleep(QUIET)
    return {"clients": clients, "rate": rate, **result}


def sustains(row: Dict[str, Any]) -> bool:
    """
    Every line delivered, with p99 latency within the bound.
    """
    return bool(row.get("complete")) and row["p99_ms"] <= SUSTAINABLE_P99_MS


def sustainable_rate(
    programs: Dict[str, str],
    start: Callable[[], Optional[Server]],
    hello: str,
    clients: int,
    seconds: float,
    top: int,
) -> Tuple[int, List[Dict[str, Any]]]:
    """
    The highest offered rate (lines/s) with every line delivered and p99 at
    most 100 ms: doubling from 1,000 until a rate fails (or C{top}), then
    two steps of bisection, all on one server, warmed first.
    """
    with warmed(programs, start, hello) as server:
        if server is None:
            return 0, [{"missing": True, "rate": 1000, "complete": False}]
        return search(programs, server, hello, clients, seconds, top)


def search(
    programs: Dict[str, str],
    server: Server,
    hello: str,
    clients: int,
    seconds: float,
    top: int,
) -> Tuple[int, List[Dict[str, Any]]]:
    trials: List[Dict[str, Any]] = []

    def holds(rate: int) -> bool:
        # A miss counts once a second trial at the same rate misses too:
        # one hiccup of a busy 2-core machine is not a server's limit.
        for _ in range(2):
            row = chat_trial(programs, server, hello, clients, rate, seconds)
            trials.append(row)
            if sustains(row):
                return True
        return False

    good, bad, rate = 0, 0, 1000
    while rate <= top:
        if not holds(rate):
            bad = rate
            break
        good, rate = rate, rate * 2
    for _ in range(2 if bad else 0):
        middle = (good + bad) // 2
        good, bad = (middle, bad) if holds(middle) else (good, middle)
    return good, trials


def sustainable_runs(programs: Dict[str, str], quick: bool) -> List[Dict[str, Any]]:
    """
    The sustainable rate at 500 clients of every chat server (each pinned
    to CPU 0, as in the fan-out rows).
    """
    seconds, top = (2.0, 8000) if quick else (3.0, 128000)
    starters = chat_servers(programs)
    rows = []
    for label, start, hello in starters:
        rate, trials = sustainable_rate(programs, start, hello, 500, seconds, top)
        rows.append({"server": label, "sustainable_rate": rate, "trials": trials})
    return rows


def sustainable_table(rows: List[Dict[str, Any]]) -> List[str]:
    ncat = next(
        (r["sustainable_rate"] for r in rows if r["server"] == "ncat --chat"), 0
    )
    lines = [
        "chat, 500 clients: sustainable lines/s (all delivered, p99 <= 100 ms);"
        " the first rate missed, and why"
    ]
    for r in rows:
        ratio = f"{r['sustainable_rate'] / ncat:6.2f}x ncat" if ncat else ""
        lines.append(f"{r['server']:30} {r['sustainable_rate']:8} {ratio}  {missed(r)}")
    return lines + interpreters(rows)


def interpreters(rows: List[Dict[str, Any]]) -> List[str]:
    """
    sockproto on the other interpreter against sockproto on this one: the
    sustainable rates, and p99 at the highest rate both sustained.
    """
    base = rows[0]
    other = next((r for r in rows[1:] if r["server"].startswith("sockproto")), None)
    if other is None or not base["sustainable_rate"]:
        return []
    ratio = other["sustainable_rate"] / base["sustainable_rate"]
    line = f"{other['server']} against {base['server']}: {ratio:.2f}x sustainable"
    mine, theirs = passing(base), passing(other)
    common = set(mine) & set(theirs)
    if common:
        rate = max(common)
        line += (
            f"; at {rate} lines/s, the highest rate both searches passed, p99"
            f" {theirs[rate]['p99_ms']:.1f} against {mine[rate]['p99_ms']:.1f} ms"
        )
    return [line]


def busy(trial: Dict[str, Any]) -> str:
    """
    How busy the server was in a trial, as a share of one core.  A chat
    server near 100% may still have room: the fewer lines a reactor turn
    brings, the more turns it makes, so it is busy at any rate.
    """
    return f"{trial['server_cpu']:.0%}" if "server_cpu" in trial else "?"


def passing(row: Dict[str, Any]) -> Dict[int, Dict[str, Any]]:
    """
    A server's passed trials by rate (the last one at each rate).
    """
    return {t["rate"]: t for t in row["trials"] if sustains(t)}


def missed(row: Dict[str, Any]) -> str:
    """
    The lowest rate a server missed in its search (in both of its trials),
    and how: p99, lines lost, and how busy the load generator and the
    server were (whichever is near 100% is the limit).
    """
    passed = set(passing(row))
    failed = [t for t in row["trials"] if t["rate"] not in passed]
    if not failed:
        return "(missed none up to the top of the search)"
    t = min(failed, key=lambda t: t["rate"])
    if "error" in t or "missing" in t:
        return f"missed {t['rate']}: {t.get('error', 'not installed')}"
    lost = "" if t.get("complete") else ", lines lost"
    return (
        f"missed {t['rate']}: p99 {t['p99_ms']:.0f} ms{lost},"
        f" loadgen CPU {t['loadgen_cpu']:.0%}, server CPU {busy(t)}"
    )


def shared_runs(programs: Dict[str, str], quick: bool) -> Dict[str, Any]:
    """
    One process against C{--workers 2}: echo round trips, and chat
    fan-out to 500 clients (over a private Redis for the workers).
    """
    seconds = 2.0 if quick else 3.0
    report: Dict[str, Any] = {"echo": [], "chat": {}}
    for workers in (1, 2):
        server = workers_server("echo", workers)
        try:
            small = loadgen(programs, "echo", LOOPBACK, server.port, 10, 64, 1, seconds)
        finally:
            server.stop()
        report["echo"].append({"workers": workers, **small})
    top = 4000 if quick else 64000
    for workers in (1, 2):

        def start(workers: int = workers) -> Server:
            return workers_server("chat", workers, *RATE_LIMIT)

        rate, trials = sustainable_rate(programs, start, "none", 500, seconds, top)
        # The last trial at 4,000: the one that decided (a retry, after a miss).
        at4000 = next((t for t in reversed(trials) if t["rate"] == 4000), None)
        if at4000 is None:  # the search failed below 4,000
            with warmed(programs, start, "none") as again:
                assert again is not None  # workers_server always starts one
                at4000 = chat_trial(programs, again, "none", 500, 4000, seconds)
        report["chat"][str(workers)] = {
            "sustainable_rate": rate,
            "at_4000": at4000,
            "trials": trials,
        }
    return report


def shared_table(shared: Dict[str, Any]) -> List[str]:
    one, two = shared["echo"]
    lines = [
        "several processes (both cores, shared with the load generator)",
        f"echo small, round trips/s: 1 process {one['round_trips_per_second']:.0f},"
        f" --workers 2 {two['round_trips_per_second']:.0f}"
        f" ({two['round_trips_per_second'] / one['round_trips_per_second']:.2f}x);"
        f" loadgen CPU {one['loadgen_cpu']:.0%} / {two['loadgen_cpu']:.0%}",
    ]
    single, double = shared["chat"]["1"], shared["chat"]["2"]
    for label, r in (("1 process", single), ("--workers 2 + Redis", double)):
        at = r["at_4000"]
        lines.append(
            f"chat, 500 clients, {label:20}: sustainable {r['sustainable_rate']:6}"
            f" lines/s; at 4,000 offered p99 {at.get('p99_ms', float('nan')):.1f} ms,"
            f" {'all delivered' if at.get('complete') else 'NOT ALL DELIVERED'},"
            f" loadgen CPU {at.get('loadgen_cpu', 0):.0%}"
        )
    if single["sustainable_rate"]:
        ratio = double["sustainable_rate"] / single["sustainable_rate"]
        lines.append(
            f"chat sustainable rate, 2 workers over Redis / 1 process: {ratio:.2f}x"
        )
    return lines


# --- the cost of --metrics ------------------------------------------------


METRICS_RATE = 48000
"""Lines/s offered in the --metrics rows: a high load that the load
generator still drives with room to spare, where a cost would show in the
median latency (each reactor turn longer) before it shows in deliveries."""


def metrics_runs(programs: Dict[str, str], quick: bool) -> Dict[str, Any]:
    """
    Chat fan-out to 500 clients at C{METRICS_RATE} lines/s offered, with
    C{--metrics} on and off, in interleaved rounds, scraped every 0.5 s
    while on; medians of deliveries/s and of the median latency.
    """
    rounds, seconds = (2, 2.0) if quick else (5, 3.0)
    runs: Dict[str, List[Dict[str, Any]]] = {"off": [], "on": []}
    for _ in range(rounds):
        for mode in ("off", "on"):
            metricsPort = free_port()
            extra = []
            if mode == "on":
                extra = ["--metrics", f"tcp:{metricsPort}:interface={LOOPBACK}"]
            command = twistd("chat", "--listen", LISTEN, *CHAT_LIMITS, *extra)
            command.remove("--logfile=/dev/null")
            server = Server(
                f"chat, metrics {mode}", command, r"chat listening on [\d.]+:(\d+)"
            )
            scraper = None
            if mode == "on":
                scraper = subprocess.Popen(
                    [sys.executable, "-c", SCRAPER, str(metricsPort)]
                )
            try:
                time.sleep(0.5)
                runs[mode].append(
                    loadgen(
                        programs,
                        "chat",
                        LOOPBACK,
                        server.port,
                        500,
                        METRICS_RATE,
                        seconds,
                        "none",
                        2,
                    )
                )
            finally:
                if scraper is not None:
                    scraper.kill()
                server.stop()
    off = median(runs["off"], "deliveries_per_second")
    on = median(runs["on"], "deliveries_per_second")
    p50 = {mode: median(runs[mode], "p50_ms") for mode in runs}
    return {"off": off, "on": on, "ratio": on / off, "p50_ms": p50, "runs": runs}


FRONT_ENDS = {"tcp": ("chat", "none"), "ws": ("web", "ws"), "irc": ("irc", "irc")}
"""Each front end of the chat: the service whose port it is, the loadgen's HELLO."""


def front_end_runs(programs: Dict[str, str], quick: bool) -> Dict[str, Any]:
    """
    Chat fan-out to 500 clients at 4,000 lines/s offered, over raw TCP (the
    line protocol), WebSocket (C{--web}, the loadgen's frames masked as a
    browser's) and IRC (C{--irc}), from one server process serving all
    three, in interleaved rounds, a fresh server each; medians.
    """
    rounds, seconds = (1, 2.0) if quick else (3, 3.0)
    runs: Dict[str, List[Dict[str, Any]]] = {mode: [] for mode in FRONT_ENDS}
    for _ in range(rounds):
        for mode, (service, hello) in FRONT_ENDS.items():
            command = twistd("chat", "--listen", LISTEN, "--web", LISTEN)
            command += ["--irc", LISTEN, *CHAT_LIMITS]
            command.remove("--logfile=/dev/null")
            pattern = service + r" listening on [\d.]+:(\d+)"
            server = Server(f"chat over {mode}", command, pattern)
            try:
                time.sleep(0.5)
                result = loadgen(
                    programs,
                    "chat",
                    LOOPBACK,
                    server.port,
                    500,
                    4000,
                    seconds,
                    hello,
                    2,
                )
                runs[mode].append(result)
            finally:
                server.stop()
    report: Dict[str, Any] = {"runs": runs}
    tcp = median(runs["tcp"], "deliveries_per_second")
    for mode in FRONT_ENDS:
        rate = median(runs[mode], "deliveries_per_second")
        report[mode] = {
            "deliveries_per_second": rate,
            "ratio": rate / tcp,
            "p99_ms": median(runs[mode], "p99_ms"),
            "complete": all(r.get("complete") for r in runs[mode]),
        }
    return report


def front_end_table(report: Dict[str, Any]) -> List[str]:
    lines = [
        "chat fan-out, 500 clients, 4,000 lines/s offered, one process serving"
        " every front end:"
    ]
    for mode in FRONT_ENDS:
        row = report[mode]
        done = "every message delivered" if row["complete"] else "INCOMPLETE"
        lines.append(
            f"  {mode:4} {row['deliveries_per_second']:>12,.0f} deliveries/s"
            f" ({row['ratio']:.2f}x raw TCP), p99 {row['p99_ms']:.1f} ms, {done}"
        )
    return lines


SCRAPER = """
import sys, time, urllib.request
port = sys.argv[1]
while True:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read()
    except OSError:
        pass
    time.sleep(0.5)
"""


# --- report ---------------------------------------------------------------


def machine() -> Dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": platform.platform(),
    }


def echo_table(echo: Dict[str, Dict[str, Any]]) -> List[str]:
    base = echo["twisted wire.Echo"]
    lines = [
        "echo                           round trips/s   ratio   p50 us   p99 us"
        "     MB/s   ratio"
        "  loadgen CPU  server CPU",
    ]
    for name, r in echo.items():
        lines.append(
            f"{name:30} {r['round_trips_per_second']:13.0f} "
            f"{r['round_trips_per_second'] / base['round_trips_per_second']:6.2f}x "
            f"{r['p50_us']:8.0f} {r['p99_us']:8.0f} {r['mb_per_second']:8.0f} "
            f"{r['mb_per_second'] / base['mb_per_second']:6.2f}x"
            f" {r['loadgen_cpu']:12.0%} {r['server_cpu']:11.0%}"
            + ("" if not r["errors"] else f"  {r['errors']} ERRORS")
        )
    peer = echo.get("asyncio echo")
    for name, r in echo.items():
        if peer is not None and name.startswith("sockproto"):
            lines.append(
                f"{name} against asyncio echo, same run:"
                f" {r['round_trips_per_second'] / peer['round_trips_per_second']:.2f}x"
                f" round trips, {r['mb_per_second'] / peer['mb_per_second']:.2f}x MB/s"
                f" (bulk rounds: {bulk_spread(r)}; asyncio {bulk_spread(peer)})"
            )
    return lines


def bulk_spread(r: Dict[str, Any]) -> str:
    """
    The lowest and highest MB/s of a server's bulk rounds.
    """
    values = [run["mb_per_second"] for run in r["runs"]["bulk"]]
    return f"{min(values):.0f}-{max(values):.0f}"


def chat_table(rows: List[Dict[str, Any]]) -> List[str]:
    lines = [
        "chat fan-out                   clients  offered/s   deliveries/s   vs ncat"
        "   p99 ms  all?  loadgen CPU  server CPU"
    ]
    ncat = {
        (r["clients"], r["rate"]): r.get("deliveries_per_second")
        for r in rows
        if r["server"] == "ncat --chat"
    }
    for r in rows:
        if "missing" in r or "error" in r:
            lines.append(
                f"{r['server']:30} {r['clients']:7} {r['rate']:10}   "
                f"{r.get('missing') or r.get('error')}"
            )
            continue
        reference = ncat.get((r["clients"], r["rate"]))
        ratio = (
            f"{r['deliveries_per_second'] / reference:7.2f}x"
            if reference
            else "      -"
        )
        lines.append(
            f"{r['server']:30} {r['clients']:7} {r['rate']:10} "
            f"{r['deliveries_per_second']:14.0f}   {ratio} {r['p99_ms']:8.1f}  "
            f"{'yes' if r['complete'] else 'NO ':4} {r['loadgen_cpu']:10.0%}"
            f" {busy(r):>11}"
        )
    return lines


def chart(report: Dict[str, Any], path: Path) -> Optional[Path]:
    if "echo" not in report or "chat" not in report:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.5))
    names = list(report["echo"])
    axes[0].bar(names, [report["echo"][n]["round_trips_per_second"] for n in names])
    axes[0].set_title("echo, 64 B: round trips/s")
    axes[1].bar(names, [report["echo"][n]["mb_per_second"] for n in names])
    axes[1].set_title("echo, 64 KiB: MB/s")
    for ax in axes[:2]:
        ax.tick_params(axis="x", rotation=20)
    for server in sorted({r["server"] for r in report["chat"]}):
        for clients in sorted({r["clients"] for r in report["chat"]}):
            rows = [
                r
                for r in report["chat"]
                if r["server"] == server
                and r["clients"] == clients
                and "deliveries" in r
            ]
            if rows:
                label = f"{server}, {clients} clients"
                rates = [r["rate"] for r in rows]
                axes[2].plot(
                    rates,
                    [r["deliveries_per_second"] for r in rows],
                    marker="o",
                    label=label,
                )
                axes[3].plot(
                    rates, [r["p99_ms"] for r in rows], marker="o", label=label
                )
    axes[2].set_title("chat fan-out: deliveries/s")
    axes[3].set_title("chat fan-out: p99 latency (ms)")
    axes[3].set_yscale("log")
    axes[3].axhline(100, color="grey", linestyle="--", linewidth=0.8)
    for ax in axes[2:]:
        ax.set_xlabel("offered lines/s")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    return path


PARTS = {"echo", "chat", "sustainable", "scale", "shared", "metrics", "frontends"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs")
    parser.add_argument("--results", default=str(HERE / "results"))
    parser.add_argument("--idle-clients", type=int, default=10_000)
    parser.add_argument(
        "--only",
        default="echo,chat,sustainable,scale,shared,metrics,frontends",
        help="which parts: echo,chat,sustainable,scale,shared,metrics,frontends",
    )
    parser.add_argument(
        "--python",
        help="also run the sockproto rows under this interpreter, from a virtual"
        " environment where sockproto is installed (as .venvpypy/bin/python)",
    )
    options = parser.parse_args()
    global OTHER_PYTHON
    # Absolute (the servers run in benchmarks/), symbolic links kept (the
    # python of a virtual environment is one).
    OTHER_PYTHON = os.path.abspath(options.python) if options.python else None
    unknown = set(options.only.split(",")) - PARTS
    if unknown:
        parser.error(
            f"--only: unknown part {', '.join(sorted(unknown))}"
            f" (the parts: {', '.join(sorted(PARTS))})"
        )
    results = Path(options.results)
    results.mkdir(parents=True, exist_ok=True)
    programs = build(results)
    rounds, seconds = (2, 1.0) if options.quick else (7, 2.0)
    rates = [500, 4000] if options.quick else [500, 1000, 2000, 4000, 8000]
    report: Dict[str, Any] = {
        "machine": machine(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    parts = options.only.split(",")
    if "echo" in parts:
        print("echo ...", file=sys.stderr)
        report["echo"] = echo_runs(programs, rounds, seconds)
    if "chat" in parts:
        print("chat fan-out ...", file=sys.stderr)
        chatSeconds = 2.0 if options.quick else 3.0
        report["chat"] = chat_runs(programs, [50, 500], rates, chatSeconds)
    if "sustainable" in parts:
        print("chat sustainable rates ...", file=sys.stderr)
        report["sustainable"] = sustainable_runs(programs, options.quick)
    if "scale" in parts:
        print("scale ...", file=sys.stderr)
        report["scale"] = scale_run(programs, options.idle_clients)
    if "shared" in parts:
        print("several processes ...", file=sys.stderr)
        report["shared"] = shared_runs(programs, options.quick)
    if "metrics" in parts:
        print("the cost of --metrics ...", file=sys.stderr)
        report["metrics"] = metrics_runs(programs, options.quick)
    if "frontends" in parts:
        print("chat over raw TCP, WebSocket and IRC ...", file=sys.stderr)
        report["frontends"] = front_end_runs(programs, options.quick)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = results / f"benchmark-{stamp}.json"
    path.write_text(json.dumps(report, indent=2))
    picture = chart(report, results / f"benchmark-{stamp}.png")
    print("\n".join(summary(report)))
    print(
        f"\nresults: {path}"
        + (
            f" and {picture}"
            if picture
            else " (no chart: no matplotlib, or a partial run)"
        )
    )


def summary(report: Dict[str, Any]) -> List[str]:
    m = report["machine"]
    lines = [f"{m['cpu']}, {m['cores']} cores, {m['implementation']} {m['python']}", ""]
    if "echo" in report:
        lines += echo_table(report["echo"]) + [""]
    if "chat" in report:
        lines += chat_table(report["chat"]) + [""]
    if "sustainable" in report:
        lines += sustainable_table(report["sustainable"]) + [""]
    if "shared" in report:
        lines += shared_table(report["shared"]) + [""]
    if "metrics" in report:
        m = report["metrics"]
        p50 = m["p50_ms"]
        lines += [
            f"chat fan-out, 500 clients, {METRICS_RATE:,} lines/s offered:"
            f" --metrics off {m['off']:.0f} deliveries/s, on (scraped every 0.5 s)"
            f" {m['on']:.0f} ({m['ratio']:.3f}x); median latency off"
            f" {p50['off']:.1f} ms, on {p50['on']:.1f} ms",
            "",
        ]
    if "frontends" in report:
        lines += front_end_table(report["frontends"]) + [""]
    if "scale" in report:
        s = report["scale"]
        lines.append(
            f"scale: {s['clients']} idle chat clients,"
            f" {s['rss_per_client_kib']:.2f} KiB of server RSS each;"
            f" one line reached all of them in {s['fanout_ms']:.1f} ms"
        )
    return lines


if __name__ == "__main__":
    main()
