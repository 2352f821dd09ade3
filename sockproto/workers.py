# -*- test-case-name: tests.test_workers -*-
"""
C{--workers N}: N reactor processes share each listening socket.

The course's "fork after listen", done the Twisted way: the parent process
listens (so a port in use, or port 0, is settled once), never accepts, and
starts N workers (L{WORKER_COMMAND}) with the listening
sockets as inherited file descriptors; each worker adopts them with
C{reactor.adoptStreamPort} and serves connections as one sockproto process
would.  The kernel hands each new connection to one of the processes
waiting in accept.  A worker that dies is started again; SIGTERM to the
parent stops every worker cleanly (their clients are told), then the
parent.  Each line a worker logs reaches the parent's log as
C{[worker N] ...}.

The chat's workers share their rooms through Redis: C{--redis URL}, or,
without one, a private C{redis-server} (when one is on the PATH) that the
parent starts on a UNIX socket in a temporary folder and stops on exit.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from twisted.application.service import MultiService, Service
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.logger import ILogObserver, eventAsText, globalLogBeginner
from twisted.python import usage
from twisted.python.failure import Failure
from zope.interface import implementer

from .logs import SafeLogger
from .options import ServiceOptions
from .server import ServiceFactory, default_reactor

__all__ = ["AdoptedEndpoint", "PrivateRedis", "WorkersService", "main"]

log = SafeLogger()


@implementer(IStreamServerEndpoint)
class AdoptedEndpoint:
    """
    A listening socket inherited from the parent process, as an endpoint.
    """

    def __init__(self, reactor: Any, fd: int, family: int) -> None:
        self.reactor, self.fd, self.family = reactor, fd, family

    def listen(self, factory: Any) -> "Deferred[IListeningPort]":
        return succeed(self.reactor.adoptStreamPort(self.fd, self.family, factory))


def port_family(port: IListeningPort) -> int:
    """
    The address family of a listening port, for C{adoptStreamPort}.
    """
    host = port.getHost()
    if isinstance(host, IPv6Address):
        return socket.AF_INET6
    if isinstance(host, UNIXAddress):
        return socket.AF_UNIX
    assert isinstance(host, IPv4Address)
    return socket.AF_INET


class _Worker(ProcessProtocol):
    """
    One worker process: its log lines go to the parent's log, named.
    """

    def __init__(self, parent: "WorkersService", number: int) -> None:
        self.parent = parent
        self.number = number
        self.ended: Deferred[int] = Deferred()
        self._partial = b""

    def outReceived(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            log.info(
                "[worker {number}] {line}",
                number=self.number,
                line=line.decode("utf-8", "replace"),
            )

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        value: Any = reason.value
        status = value.exitCode if value.exitCode is not None else -value.signal
        self.ended.callback(status)
        self.parent.workerEnded(self, status)

    def stop(self, signal: str = "TERM") -> None:
        if self.transport is None:
            return
        try:
            self.transport.signalProcess(signal)
        except ProcessExitedAlready:
            pass


class WorkersService(MultiService):
    """
    The parent of C{--workers N}: the listening ports (its children) and N
    worker processes running C{arguments} (sockproto's own command line).

    @ivar stopTimeout: seconds a worker has to stop on SIGTERM before it
        is killed.
    """

    stopTimeout = 15.0
    restartDelay = 1.0

    def __init__(
        self,
        reactor: Any,
        count: int,
        arguments: Sequence[str],
        broker: Optional["PrivateRedis"] = None,
    ) -> None:
        super().__init__()
        self.reactor = reactor
        self.count = count
        self.arguments = list(arguments)
        self.broker = broker
        self.workers: Dict[int, _Worker] = {}
        self.ports: List[Tuple[str, str, Any]] = []

    def addPort(self, serviceName: str, description: str, service: Any) -> None:
        """
        Add the L{EndpointService} listening on C{description} for
        C{serviceName}; its port is handed to the workers.
        """
        service.setServiceParent(self)
        self.ports.append((serviceName, description, service))
        names = sorted({name for name, _, _ in self.ports})
        self.setName(f"{', '.join(names)} in {self.count} workers")

    def startService(self) -> None:
        if self.broker is not None:
            self.broker.startService()
            self.arguments += self.broker.arguments
        super().startService()
        for number in range(1, self.count + 1):
            self.startWorker(number)
        log.info("sockproto: {count} workers started", count=self.count)

    def _adopted(self) -> Tuple[str, Dict[int, int]]:
        adopted: Dict[str, List[Any]] = {}
        fds: Dict[int, int] = {}
        for name, description, service in self.ports:
            port = service.port
            port.stopReading()  # the workers accept, not this process
            fd = port.fileno()
            adopted.setdefault(name, []).append([description, fd, port_family(port)])
            fds[fd] = fd
        return json.dumps(adopted), fds

    def startWorker(self, number: int) -> None:
        adopted, fds = self._adopted()
        command = [sys.executable, "-c", WORKER_COMMAND]
        command += ["--worker", str(number), "--adopt", adopted, "--"]
        command += self.arguments
        worker = _Worker(self, number)
        childFDs: Dict[int, Any] = {0: "w", 1: "r", 2: "r", **fds}
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.reactor.spawnProcess(worker, command[0], command, env, childFDs=childFDs)
        self.workers[number] = worker

    def workerEnded(self, worker: _Worker, status: int) -> None:
        if self.workers.get(worker.number) is not worker:
            return
        del self.workers[worker.number]
        if not self.running:
            return
        log.warn(
            "sockproto: worker {number} exited ({status}); starting it again",
            number=worker.number,
            status=status,
        )
        self.reactor.callLater(self.restartDelay, self._restart, worker.number)

    def _restart(self, number: int) -> None:
        if self.running and number not in self.workers:
            self.startWorker(number)

    def stopService(self) -> "Deferred[Any]":
        workers = list(self.workers.values())
        Service.stopService(self)
        for worker in workers:
            worker.stop("TERM")
        for worker in workers:
            kill = self.reactor.callLater(self.stopTimeout, worker.stop, "KILL")
            worker.ended.addBoth(_cancel, kill)
        d: Deferred[Any] = gatherResults([w.ended for w in workers])
        d.addBoth(lambda _: MultiService.stopService(self))
        d.addBoth(lambda _: self._stopBroker())
        return d

    def _stopBroker(self) -> None:
        if self.broker is not None:
            self.broker.stopService()


def _die_with_parent() -> None:
    """
    In the private redis-server, before it runs: on Linux, ask for SIGTERM
    when sockproto dies, even by SIGKILL, so that no server is left behind.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM
    except (OSError, AttributeError):
        pass  # not Linux: stopService still stops it


def _cancel(result: object, call: Any) -> object:
    if call.active():
        call.cancel()
    return result


class PrivateRedis(Service):
    """
    A C{redis-server} of this process's own, for the chat's workers: on a
    UNIX socket in a new temporary folder, saving nothing, stopped (and its
    folder removed) when sockproto stops.

    @ivar arguments: what to add to the workers' command line.
    """

    executable = "redis-server"

    def __init__(self, subCommand: Optional[str]) -> None:
        self.subCommand = subCommand
        self.directory = ""
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.arguments: List[str] = []

    @classmethod
    def available(cls) -> bool:
        return shutil.which(cls.executable) is not None

    def startService(self) -> None:
        super().startService()
        self.directory = tempfile.mkdtemp(prefix="sockproto-redis-")
        path = os.path.join(self.directory, "redis.sock")
        command = [self.executable, "--port", "0", "--unixsocket", path]
        command += ["--unixsocketperm", "700", "--save", "", "--appendonly", "no"]
        logfile = os.path.join(self.directory, "redis.log")
        command += ["--dir", self.directory, "--logfile", logfile]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + 10
        while not os.path.exists(path) and time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            time.sleep(0.01)  # a server starting, once, before the reactor runs
        url = f"unix://{path}"
        if not os.path.exists(path):
            with open(logfile, errors="replace") as f:
                last = (f.read().strip().splitlines() or ["no output"])[-1]
            log.error("chat: the private redis-server did not start: {why}", why=last)
        if self.subCommand == "chat":
            self.arguments = ["--redis", url]
        else:
            self.arguments = [f"--set=chat.redis={url}"]
        log.info(
            "chat: no --redis given: started a private redis-server on {url}"
            " for the workers; it stops with sockproto",
            url=url,
        )

    def stopService(self) -> None:
        super().stopService()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


def check_broker(options: Sequence[ServiceOptions], subCommand: Optional[str]) -> Any:
    """
    The private Redis the chat's workers need, if any.

    @raise usage.UsageError: if the chat runs in workers and has no broker.
    """
    chat = [o for o in options if o.serviceName == "chat"]
    if not chat or chat[0]["redis"]:
        return None
    try:
        import hiredis  # noqa: F401
    except ImportError:
        raise usage.UsageError(
            "chat with --workers shares its rooms through Redis: pip install"
            " 'sockproto[redis]'"
        ) from None
    if not PrivateRedis.available():
        raise usage.UsageError(
            "chat with --workers needs a broker: give --redis URL, or install"
            " redis-server (apt-get install redis-server) for a private one"
        )
    return PrivateRedis(subCommand)


# --- the worker process ------------------------------------------------------


WORKER_COMMAND = "from sockproto.tap import worker_main; worker_main()"
"""What a worker process runs (C{python -c}): the composition root's
L{sockproto.tap.worker_main}, with the arguments that follow."""


class _Parent(Protocol):
    """
    The worker's standard input: when the parent goes, so does the worker.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        if self.reactor.running:
            self.reactor.stop()


@implementer(ILogObserver)
def _write_event(event: Dict[str, Any]) -> None:
    text = eventAsText(event, includeTimestamp=False, includeSystem=False)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main(optionsClass: Any, makeService: Any, argv: Optional[List[str]] = None) -> None:
    """
    Run one worker: C{--worker N --adopt JSON -- SOCKPROTO-ARGUMENTS}, with
    the composition root's C{optionsClass} and C{makeService} (see
    L{WORKER_COMMAND}).
    """
    from twisted.internet import reactor
    from twisted.internet.stdio import StandardIO

    args = sys.argv[1:] if argv is None else argv
    split = args.index("--")
    ours, rest = args[:split], args[split + 1 :]
    number = int(ours[ours.index("--worker") + 1])
    adopted = json.loads(ours[ours.index("--adopt") + 1])
    options = optionsClass()
    options.parseOptions(rest)
    endpoints = {
        name: {d: AdoptedEndpoint(reactor, fd, family) for d, fd, family in ports}
        for name, ports in adopted.items()
    }
    globalLogBeginner.beginLoggingTo([_write_event], redirectStandardIO=False)
    log.info("pid {pid}", pid=os.getpid())
    service = makeService(options, reactor, worker=(number, endpoints))
    StandardIO(_Parent(reactor))
    service.privilegedStartService()
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()


class _ParentPortFactory(ServiceFactory):
    """
    The factory of a port the parent listens on for its workers: it only
    names the service, as the parent never accepts.
    """

    noisy = False

    def logPrefix(self) -> str:
        return f"{self.serviceName} (shared with the workers)"


def placeholder_factory(serviceName: str) -> ServiceFactory:
    """
    A factory for the parent's port of C{serviceName}.
    """
    factory = _ParentPortFactory(maxConnections=0, clock=default_reactor())
    factory.serviceName = serviceName
    return factory
