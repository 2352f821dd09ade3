# -*- test-case-name: tests.test_service -*-
"""
The services behind C{twistd sockproto}: option parsing, and the
L{MultiService} that listens on every endpoint in one reactor.
"""

import signal
import socket
import sys
from typing import (
    Any,
    Callable,
    Dict,
    List,
    NoReturn,
    Optional,
    Sequence,
    Tuple,
    Type,
)

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IStreamServerEndpoint,
)
from twisted.python import usage

import twisted

from . import __version__
from .base import (
    DEFAULT_MAX_PER_PEER,
    ServiceFactory,
    default_reactor,
)
from .chat.options import ChatOptions
from .coucou import CoucouOptions
from .echo import EchoOptions
from .logs import SafeLogger
from .options import (
    METRICS,
    WORKERS,
    ServiceOptions,
    check_endpoint,
    count,
    describe_error,
)
from .text import format_address
from .workers import WorkersService, check_broker, placeholder_factory

__all__ = [
    "ChatOptions",
    "CoucouOptions",
    "EchoOptions",
    "EndpointService",
    "Options",
    "ProtocolService",
    "SockprotoService",
    "makeService",
]

log = SafeLogger()

DEFAULT_WEB = "tcp:12348"
"""Where the chat's web page listens when every service runs."""
DEFAULT_IRC = "tcp:6667"
"""Where the chat speaks IRC when every service runs (IRC's own port)."""

SERVICES: Dict[str, Type[ServiceOptions]] = {
    "coucou": CoucouOptions,
    "echo": EchoOptions,
    "chat": ChatOptions,
}


class Options(usage.Options):
    """
    C{twistd sockproto}: every service in one process, or one of them.
    """

    synopsis = "[options] [SERVICE [options]]"
    longdesc = (
        "With no SERVICE, runs every service in one process, each on its"
        " default endpoint (coucou tcp:12345, echo tcp:12346, chat tcp:12347)"
        " or on those given with --echo, --coucou and --chat. With a SERVICE,"
        " runs only that one; see 'twistd sockproto SERVICE --help'."
    )
    subCommands = [
        [name, None, options, options.description] for name, options in SERVICES.items()
    ]
    optFlags = [[f"no-{name}", None, f"Do not run {name}"] for name in SERVICES] + [
        ["no-web", None, "Do not serve the chat's web page"],
        ["no-irc", None, "Do not serve the chat over IRC"],
    ]
    optParameters = [
        [
            "max-per-peer",
            None,
            None,
            f"--max-per-peer for every service [default: {DEFAULT_MAX_PER_PEER}]",
            count("max-per-peer"),
        ],
        WORKERS,
        METRICS,
    ]

    def opt_version(self) -> None:
        """
        Display sockproto's version and exit.
        """
        print(f"sockproto {__version__} (Twisted {twisted.__version__})")
        sys.exit(0)

    def __init__(self) -> None:
        super().__init__()
        for name in SERVICES:
            self[name] = []
        self["web"] = []
        self["irc"] = []
        self["set"] = {name: [] for name in SERVICES}
        self.chosen: List[ServiceOptions] = []

    def opt_web(self, description: str) -> None:
        """Where the chat's web page listens [default: tcp:12348]; repeatable"""
        self["web"].append(check_endpoint(description))

    def opt_irc(self, description: str) -> None:
        """Where the chat speaks IRC [default: tcp:6667]; repeatable"""
        self["irc"].append(check_endpoint(description))

    def opt_set(self, setting: str) -> None:
        name, dot, rest = setting.partition(".")
        option, equals, value = rest.partition("=")
        if name not in SERVICES or not option:
            services = ", ".join(SERVICES)
            raise usage.UsageError(
                f"--set takes SERVICE.OPTION=VALUE, SERVICE one of {services};"
                f" not {setting!r}"
            )
        self["set"][name].append(f"--{option}={value}" if equals else f"--{option}")

    def parseOptions(self, options: Optional[Sequence[str]] = None) -> None:
        """
        Parse, turning any usage error into one line and exit status 1.
        """
        self.arguments = list(sys.argv[1:] if options is None else options)
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            where = "twistd sockproto"
            if self.subCommand is not None:
                where += " " + self.subCommand
            reason = str(e).replace("Parameter type enforcement failed: ", "")
            raise SystemExit(_say(f"{where}: {reason} (see: {where} --help)")) from None

    def postOptions(self) -> None:
        for name in SERVICES:
            if self[name] and self[f"no-{name}"]:
                raise usage.UsageError(f"--{name} and --no-{name} contradict")
            if self[name] and self.subCommand is not None:
                raise usage.UsageError(
                    f"--{name} is for running every service; to run"
                    f" {self.subCommand} alone, give its --listen after it"
                )
        if self.subCommand is not None and self["max-per-peer"] is not None:
            raise usage.UsageError(
                f"--max-per-peer is for running every service; to run"
                f" {self.subCommand} alone, give it after {self.subCommand}"
            )
        if self.subCommand is not None and any(self["set"].values()):
            raise usage.UsageError(
                f"--set is for running every service; to run {self.subCommand}"
                f" alone, give its options after it"
            )
        if self.subCommand is not None and self["workers"] != 1:
            raise usage.UsageError(
                f"--workers before {self.subCommand} is for running every"
                f" service; to run {self.subCommand} alone, give it after"
                f" {self.subCommand}"
            )
        for front in ("web", "irc"):
            self._checkFrontEnd(front)
        if self.subCommand is None and all(self[f"no-{n}"] for n in SERVICES):
            raise usage.UsageError("every service was left out")
        if self.subCommand is None:
            self.chosen = [
                self._parseService(n) for n in SERVICES if not self[f"no-{n}"]
            ]
        if self.subCommand is not None and self["metrics"] is not None:
            raise usage.UsageError(
                f"--metrics before {self.subCommand} is for running every"
                f" service; to run {self.subCommand} alone, give it after"
                f" {self.subCommand}"
            )
        if self.workers() > 1:
            self._checkWorkers()
        if self.metrics() is not None:
            self._checkMetrics()

    def _checkFrontEnd(self, name: str) -> None:
        """
        The chat's C{--web} or C{--irc} in the all-in-one form.
        """
        if self.subCommand is not None and (self[name] or self[f"no-{name}"]):
            raise usage.UsageError(
                f"--{name} and --no-{name} before {self.subCommand} are for"
                f" running every service; to run {self.subCommand} alone, give"
                f" --{name} after it"
            )
        if self[name] and self[f"no-{name}"]:
            raise usage.UsageError(f"--{name} and --no-{name} contradict")
        if self[name] and self["no-chat"]:
            raise usage.UsageError(f"--{name} serves the chat: it needs the chat")

    def metrics(self) -> Optional[str]:
        """
        Where to serve the metrics, if anywhere.
        """
        if self.subCommand is not None:
            return self.subOptions["metrics"]  # type: ignore[no-any-return]
        return self["metrics"]  # type: ignore[no-any-return]

    def _checkMetrics(self) -> None:
        description = self.metrics()
        assert description is not None
        check_endpoint(description)
        if self.workers() > 1:
            raise usage.UsageError(
                "--metrics serves one process's counts; with --workers, each"
                " worker would need its own: not supported yet"
            )
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            raise usage.UsageError(
                "--metrics needs the metrics extra: pip install 'sockproto[metrics]'"
            ) from None

    def workers(self) -> int:
        """
        How many worker processes share the listening sockets (1: none).
        """
        if self.subCommand is not None:
            return int(self.subOptions["workers"])
        return int(self["workers"])

    def _checkWorkers(self) -> None:
        for options in self.serviceOptions():
            for description in options.allPorts():
                if description.split(":", 1)[0] not in ("tcp", "tcp6", "unix"):
                    raise usage.UsageError(
                        f"--workers shares tcp:, tcp6: and unix: ports, not"
                        f" {description!r}: run one process per TLS port, or"
                        f" put a TLS proxy in front"
                    )
        check_broker(self.serviceOptions(), self.subCommand)

    def _parseService(self, name: str) -> ServiceOptions:
        options = SERVICES[name]()
        args = [f"--listen={d}" for d in self[name]]
        if name == "chat":
            for front, default in (("web", DEFAULT_WEB), ("irc", DEFAULT_IRC)):
                if not self[f"no-{front}"]:
                    args += [f"--{front}={d}" for d in self[front] or [default]]
        if self["max-per-peer"] is not None:
            args.append(f"--max-per-peer={self['max-per-peer']}")
        try:
            options.parseOptions(args + self["set"][name])
        except usage.UsageError as e:
            raise usage.UsageError(f"{name}: {e}") from None
        return options

    def serviceOptions(self) -> List[ServiceOptions]:
        """
        The options of each service to run.
        """
        if self.subCommand is not None:
            return [self.subOptions]
        return self.chosen


def _endpoint_option(name: str) -> Callable[[Options, str], None]:
    """
    The C{--NAME ENDPOINT} option of the all-in-one form, for service NAME.
    """

    def option(self: Options, description: str) -> None:
        self[name].append(check_endpoint(description))

    option.__doc__ = f"Where {name} listens when all services run; repeatable"
    return option


for _name in SERVICES:
    setattr(Options, f"opt_{_name}", _endpoint_option(_name))
Options.opt_set.__doc__ = (
    "Any option of one service when all run: SERVICE.OPTION=VALUE (as"
    " chat.rate-limit=10) or SERVICE.FLAG; repeatable"
)


class StartupError(Exception):
    """
    A service cannot start.  Raised instead of L{SystemExit} when twistd
    runs as a daemon: twistd then tells the waiting parent process, which
    prints the message and exits 1, and removes the pid file.
    """


StartupError.__module__ = "builtins"  # twistd prints "StartupError: ..."


class EndpointService(StreamServerEndpointService):
    """
    Twisted's L{StreamServerEndpointService}, which also logs the address
    once listening, and turns an endpoint that cannot listen into one line
    (see L{startupFailed}).

    @ivar daemon: True when twistd runs as a daemon (see L{StartupError}).
    @ivar logOnTerminal: True when the log goes to standard output (twistd
        -n without --logfile): start-up errors then go to standard error
        only, rather than twice to the same terminal.
    """

    port: Optional[IListeningPort] = None
    daemon = False
    logOnTerminal = False
    _raiseSynchronously = True  # a port in use fails the start, at once

    def __init__(
        self, description: str, endpoint: IStreamServerEndpoint, factory: ServiceFactory
    ) -> None:
        super().__init__(endpoint, factory)
        self.description = description
        self.setName(f"{factory.serviceName} on {description}")
        self.ready: Callable[[], Deferred[Any]] = lambda: succeed(None)

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except Exception as e:
            reason: Any = e
            if isinstance(e, CannotListenError) and e.socketError is not None:
                reason = e.socketError
            what = f"{self.factory.serviceName} cannot listen on {self.description}"
            startupFailed(
                f"{what}: {describe_error(reason)}", self.daemon, self.logOnTerminal
            )
        assert self._waitingForPort is not None
        self._waitingForPort.addCallback(self._listened)

    def _listened(self, port: Optional[IListeningPort]) -> Optional[IListeningPort]:
        if port is None:  # the listen was cancelled by stopService
            return None
        self.port = port
        log.info(
            "{service} listening on {address}",
            service=self.factory.serviceName,
            address=format_address(port.getHost()),
        )
        ready = self.ready()
        if not ready.called:  # connections wait in the listen backlog
            port.stopReading()  # type: ignore[attr-defined]
            ready.addBoth(lambda _: self._accept(port))
        return port

    def _accept(self, port: IListeningPort) -> None:
        if self.running and port is self.port:
            port.startReading()  # type: ignore[attr-defined]


def startupFailed(message: str, daemon: bool, logOnTerminal: bool) -> NoReturn:
    """
    A service cannot start: log C{message} (unless the log is on the same
    terminal), and stop twistd with it.  In the foreground, that is one
    line on standard error and exit status 1; as a daemon, a
    L{StartupError} that twistd hands to the waiting parent.
    """
    if not logOnTerminal:
        log.critical("sockproto: {message}", message=message)
    if daemon:
        raise StartupError(message)
    raise SystemExit(_say("sockproto: " + message))


def _say(message: str) -> int:
    """
    Write C{message} to the real standard error, even when twistd has
    redirected C{sys.stderr} to its log; return exit status 1.
    """
    stream = sys.__stderr__
    if stream is not None:
        stream.write(message + "\n")
        stream.flush()
    return 1


class ProtocolService(MultiService):
    """
    One sockproto service: a factory and the endpoints it listens on.
    Stopping it closes the ports, then every open connection.
    """

    def __init__(
        self,
        factory: ServiceFactory,
        endpoints: Dict[str, Any],
        daemon: bool = False,
        logOnTerminal: bool = False,
    ) -> None:
        super().__init__()
        self.factory = factory
        self.setName(factory.serviceName)
        for description, endpoint in endpoints.items():
            service = EndpointService(description, endpoint, factory)
            service.daemon = daemon
            service.logOnTerminal = logOnTerminal
            service.setServiceParent(self)

    @classmethod
    def listening(
        cls, factory: ServiceFactory, *descriptions: str, reactor: Any = None
    ) -> "ProtocolService":
        """
        C{factory} listening on each endpoint string of C{descriptions}:
        the service to use in a C{.tac} file, so that stopping closes the
        ports and then says goodbye to every client.
        """
        if reactor is None:
            reactor = default_reactor()
        endpoints = {
            d: serverFromString(reactor, check_endpoint(d)) for d in descriptions
        }
        return cls(factory, endpoints)

    def addService(self, service: IService) -> None:
        """
        Add a child; an L{EndpointService} of another factory (the chat's
        web page) waits for this one's support services, and its
        connections are closed with this one's.
        """
        if isinstance(service, EndpointService):
            service.ready = self._supportReady
        super().addService(service)

    def factories(self) -> List[ServiceFactory]:
        """
        This service's factory, and those of its other endpoints.
        """
        factories = [self.factory]
        for service in self:
            factory = getattr(service, "factory", None)
            if isinstance(factory, ServiceFactory) and factory not in factories:
                factories.append(factory)
        return factories

    def startService(self) -> None:
        for service in self.factory.supportServices():
            service.startService()
        super().startService()

    def _supportReady(self) -> "Deferred[Any]":
        """
        Fires once every support service can serve (the chat has reached
        Redis, or given up waiting): until then the ports accept nothing.
        """
        waits = [
            s.whenReady()  # type: ignore[attr-defined]
            for s in self.factory.supportServices()
            if hasattr(s, "whenReady")
        ]
        return gatherResults(waits, consumeErrors=True)

    def stopService(self) -> "Deferred[Any]":
        d = super().stopService()
        d.addCallback(lambda _: self._closeAll())
        d.addCallback(lambda _: self._stopSupport())
        return d

    def _closeAll(self) -> "Deferred[Any]":
        closing = [factory.closeAll() for factory in self.factories()]
        return gatherResults(closing, consumeErrors=True)

    def _stopSupport(self) -> "Deferred[Any]":
        stopping = [
            maybeDeferred(s.stopService) for s in self.factory.supportServices()
        ]
        return gatherResults(stopping, consumeErrors=True)


class SockprotoService(MultiService):
    """
    The top service of C{twistd sockproto}: logs the host name at start-up,
    and on SIGTERM or SIGINT stops cleanly with exit status 0.
    """

    def __init__(self, reactor: Any, handleSignals: bool = True) -> None:
        super().__init__()
        self.reactor = reactor
        self.handleSignals = handleSignals

    def startService(self) -> None:
        log.info(
            "sockproto starting on host {hostname}: {services}",
            hostname=socket.gethostname(),
            services=", ".join(s.name for s in self),
        )
        super().startService()
        if self.handleSignals:
            self.reactor.callWhenRunning(self._installSignalHandlers)

    def _installSignalHandlers(self) -> None:
        # Replaces the reactor's handlers, which make twistd re-raise the
        # signal after shutdown (exit status 143 or 130).
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._signalled)
        signal.signal(signal.SIGHUP, self._hangup)

    def _hangup(self, signum: int, frame: object) -> None:
        self.reactor.callFromThread(self.reload)  # type: ignore

    def reload(self) -> None:
        """
        Read configuration files again (C{--auth file:}): on SIGHUP.
        """
        log.info("received SIGHUP, reading configuration files again")
        for service in self:
            reload = getattr(getattr(service, "factory", None), "reload", None)
            if reload is not None:
                reload()

    def _signalled(self, signum: int, frame: object) -> None:
        self.reactor.callFromThread(self._stopOnSignal, signum)  # type: ignore

    def _stopOnSignal(self, signum: int) -> None:
        if not self.reactor.running or self._stopping:
            return  # a second signal while stopping: already on its way
        self._stopping = True
        log.info("received {signal}, shutting down", signal=signal.Signals(signum).name)
        self.reactor.stop()

    _stopping = False


Adopted = Tuple[int, Dict[str, Dict[str, Any]]]


def makeService(
    options: Options, reactor: Optional[Any] = None, worker: Optional[Adopted] = None
) -> MultiService:
    """
    Build the service for C{twistd sockproto} from parsed L{Options}.

    @param worker: in a worker process of C{--workers N}: its number, and
        for each service the endpoints it adopted, by description.
    """
    if reactor is None:
        reactor = default_reactor()
    if worker is None and options.workers() > 1:
        return makeWorkersParent(options, reactor)
    top = SockprotoService(reactor)
    # Under twistd, the options' parent holds twistd's own: -n or not.
    twistdOptions = getattr(options, "parent", None) or {}
    daemon = not twistdOptions.get("nodaemon", True)
    onTerminal = (
        bool(twistdOptions)
        and not daemon
        and twistdOptions.get("logfile") in (None, "-")
        and not twistdOptions.get("syslog")
    )
    chosen = options.serviceOptions()
    factories = []
    for serviceOptions in chosen:
        serviceOptions.sharedBy = len(chosen)
        factory = serviceOptions.buildFactory()
        factories.append(factory)
        if worker is None:
            listen = serviceOptions["listen"]
            endpoints = {d: serverFromString(reactor, d) for d in listen}
        else:
            endpoints = worker[1].get(serviceOptions.serviceName, {})
        service = ProtocolService(factory, endpoints, daemon, onTerminal)
        for name, descriptions in serviceOptions.otherPorts().items():
            other = serviceOptions.otherFactory(name, factory)
            factories.append(other)
            if worker is None:
                endpoints = {d: serverFromString(reactor, d) for d in descriptions}
            else:
                endpoints = worker[1].get(name, {})
            for description, endpoint in endpoints.items():
                port = EndpointService(description, endpoint, other)
                port.daemon, port.logOnTerminal = daemon, onTerminal
                port.setServiceParent(service)
        if worker is None:  # UDP ports stay with the parent
            for extra in serviceOptions.extraServices():
                extra.daemon, extra.logOnTerminal = daemon, onTerminal
                extra.setServiceParent(service)
        service.setServiceParent(top)
    description = options.metrics()
    if description is not None and worker is None:
        from .metrics import metrics_service

        metrics = metrics_service(reactor, description, factories)
        metrics.daemon, metrics.logOnTerminal = daemon, onTerminal  # type: ignore
        metrics.setServiceParent(top)
    return top


def makeWorkersParent(options: Options, reactor: Any) -> MultiService:
    """
    The parent process of C{--workers N}: it listens, starts the workers,
    serves the UDP ports itself, and runs a private Redis if the chat needs
    one.
    """
    top = SockprotoService(reactor)
    twistdOptions = getattr(options, "parent", None) or {}
    daemon = not twistdOptions.get("nodaemon", True)
    chosen = options.serviceOptions()
    broker = check_broker(chosen, options.subCommand)
    parent = WorkersService(reactor, options.workers(), options.arguments, broker)
    for serviceOptions in chosen:
        ports = {serviceOptions.serviceName: serviceOptions["listen"]}
        ports.update(serviceOptions.otherPorts())
        for name, descriptions in ports.items():
            for description in descriptions:
                endpoint = serverFromString(reactor, description)
                factory = placeholder_factory(name)
                service = EndpointService(description, endpoint, factory)
                service.daemon = daemon
                parent.addPort(name, description, service)
        for extra in serviceOptions.extraServices():
            extra.daemon = daemon
            extra.setServiceParent(top)
    parent.setServiceParent(top)
    return top
