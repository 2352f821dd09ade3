# -*- test-case-name: tests.test_service -*-
"""
C{twistd sockproto}: the composition root, the one module that knows every
service, and that nothing in sockproto imports.  The plugin file
(C{twisted/plugins/sockproto_plugin.py}) names it without importing it, so
that other twistd commands, and C{twistd --help}, never import sockproto.

Options parse the command line (the all-in-one form, or one service and
its options); L{makeService} builds the services from them with the
listening library (L{sockproto.service}).
"""

import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type

from twisted.application.service import MultiService
from twisted.internet.endpoints import serverFromString
from twisted.python import usage

import twisted

from . import __version__
from .chat.options import ChatOptions
from .coucou import CoucouOptions
from .echo import EchoOptions
from .metrics import metrics_service
from .options import METRICS, WORKERS, ServiceOptions, check_endpoint, count
from .server import DEFAULT_MAX_PER_PEER, default_reactor
from .service import EndpointService, ProtocolService, SockprotoService, tell_stderr
from .workers import WorkersService, check_broker, placeholder_factory
from .workers import main as run_worker

__all__ = [
    "ChatOptions",
    "CoucouOptions",
    "EchoOptions",
    "Options",
    "makeService",
    "makeWorkersParent",
    "worker_main",
]

ENTRY_POINTS = "sockproto.services"
"""The entry point group of services from other packages: each names a
L{ServiceOptions} subclass, served as C{twistd sockproto NAME} and in the
all-in-one form."""


def _entry_points(group: str) -> List[Any]:
    from importlib.metadata import entry_points

    found: Any = entry_points()
    if hasattr(found, "select"):  # Python 3.10 and later
        return list(found.select(group=group))
    return list(found.get(group, []))  # Python 3.9


def find_services() -> Dict[str, Type[ServiceOptions]]:
    """
    sockproto's own services, and those other packages declare in the
    L{ENTRY_POINTS} group.  One that cannot be loaded is left out, with one
    line on standard error saying why.
    """
    services: Dict[str, Type[ServiceOptions]] = {
        "coucou": CoucouOptions,
        "echo": EchoOptions,
        "chat": ChatOptions,
    }
    for entry in _entry_points(ENTRY_POINTS):
        where = f"service {entry.name!r} ({entry.value})"
        if entry.name in services or not entry.name.isidentifier():
            tell_stderr(f"sockproto: {where} left out: its name is taken or invalid")
            continue
        try:
            options = entry.load()
        except Exception as e:
            tell_stderr(f"sockproto: {where} left out: {type(e).__name__}: {e}")
            continue
        if not (isinstance(options, type) and issubclass(options, ServiceOptions)):
            tell_stderr(f"sockproto: {where} left out: not a ServiceOptions subclass")
            continue
        services[entry.name] = options
    return services


SERVICES = find_services()

FRONT_ENDS: Dict[str, Tuple[str, str, str]] = {
    front: (service, default, what)
    for service, options in SERVICES.items()
    for front, (default, what) in options.otherPortDefaults.items()
}
"""The other ports of each service in the all-in-one form (the chat's
C{--web} and C{--irc}): by name, the service, the default endpoint and what
it serves."""


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
        [f"no-{front}", None, f"Do not serve {what}"]
        for front, (_, _, what) in FRONT_ENDS.items()
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
        for front in FRONT_ENDS:
            self[front] = []
        self["set"] = {name: [] for name in SERVICES}
        self.chosen: List[ServiceOptions] = []

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
            raise SystemExit(
                tell_stderr(f"{where}: {reason} (see: {where} --help)")
            ) from None

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
        for front in FRONT_ENDS:
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
        service = FRONT_ENDS[name][0]
        if self[name] and self[f"no-{service}"]:
            raise usage.UsageError(
                f"--{name} serves the {service}: it needs the {service}"
            )

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
        for front, (service, default, _) in FRONT_ENDS.items():
            if service == name and not self[f"no-{front}"]:
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
for _front, (_service, _default, _what) in FRONT_ENDS.items():
    _option = _endpoint_option(_front)
    _option.__doc__ = f"Where to serve {_what} [default: {_default}]; repeatable"
    setattr(Options, f"opt_{_front}", _option)
Options.opt_set.__doc__ = (
    "Any option of one service when all run: SERVICE.OPTION=VALUE (as"
    " chat.rate-limit=10) or SERVICE.FLAG; repeatable"
)


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


def worker_main(argv: Optional[List[str]] = None) -> None:
    """
    Run one worker process of C{--workers N} (see L{sockproto.workers}).
    """
    run_worker(Options, makeService, argv)
