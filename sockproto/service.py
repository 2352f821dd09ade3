# -*- test-case-name: tests.test_service -*-
"""
The services behind C{twistd sockproto}: option parsing, and the
L{MultiService} that listens on every endpoint in one reactor.
"""

import math
import signal
import socket
import sys
from typing import Any, Callable, Dict, List, NoReturn, Optional, Sequence, Type

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.cred import strcred
from twisted.cred.credentials import IUsernamePassword
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IStreamServerEndpoint,
)
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.python import usage

import twisted

from . import __version__
from .base import (
    DEFAULT_MAX_PER_PEER,
    ServiceFactory,
    default_max_connections,
    default_reactor,
)
from .chat import ChatFactory
from .chat.accounts import Accounts, UnsupportedCheckerError
from .coucou import CoucouServerFactory
from .echo import EchoFactory
from .text import format_address

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

log = Logger()


def check_endpoint(description: str) -> str:
    """
    Raise L{usage.UsageError} if C{description} is not a server endpoint
    string that Twisted can parse; return it unchanged otherwise.  (Parsing
    builds the endpoint; it does not listen.)
    """
    try:
        endpoint = serverFromString(default_reactor(), description)
    except ImportError as e:
        extra = " (pip install 'sockproto[tls]')" if "OpenSSL" in str(e) else ""
        raise usage.UsageError(f"bad endpoint {description!r}: {e}{extra}") from None
    except (ValueError, TypeError, KeyError, OSError) as e:
        reason = _endpoint_problem(description, e)
        raise usage.UsageError(f"bad endpoint {description!r}: {reason}") from None
    except Exception as e:  # OpenSSL's errors, for a bad key or certificate
        reason = _tls_problem(e)
        raise usage.UsageError(f"bad endpoint {description!r}: {reason}") from None
    port = getattr(endpoint, "_port", None)
    if isinstance(port, int) and not 0 <= port <= 65535:
        raise usage.UsageError(
            f"bad endpoint {description!r}: the port must be from 0 to 65535"
        )
    return description


def _endpoint_problem(description: str, error: Exception) -> str:
    """
    What is wrong with endpoint C{description}, in words rather than in
    Python's.
    """
    text = str(error)
    if "invalid literal for int()" in text:
        return "the port must be a number"
    if "multiple values" in text or "unexpected keyword" in text:
        return (
            "too many ':'-separated parts; escape the colons of an address"
            " with '\\', as in tcp6:12347:interface=\\:\\:1"
        )
    if isinstance(error, KeyError) or "Unknown endpoint type" in text:
        return "unknown endpoint type (tcp:, tcp6:, unix:, ssl:, ...)"
    if isinstance(error, OSError) and error.strerror:
        return (
            f"{error.strerror}: {error.filename}" if error.filename else error.strerror
        )
    return text


def _tls_problem(error: Exception) -> str:
    """
    What OpenSSL found wrong with a key or certificate, in one line.
    """
    details = error.args[0] if error.args else []
    if isinstance(details, list):
        reasons = [d[-1] for d in details if isinstance(d, tuple) and d and d[-1]]
        if reasons:
            return "bad key or certificate (" + ", ".join(reasons) + ")"
    return f"bad key or certificate ({error or type(error).__name__})"


def _number(
    option: str, kind: Callable[[str], Any], what: str, minimum: float = 0
) -> Callable[[str], Any]:
    """
    A coerce function for option C{--option}: a finite C{kind} of at
    least C{minimum}, with errors that name the option.
    """

    def coerce(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"--{option} takes {what}, not {text!r}") from None
        if not math.isfinite(value) or value < minimum:
            least = "0 or more" if minimum == 0 else f"at least {minimum:g}"
            raise ValueError(f"--{option} takes {what}, {least}, not {text!r}")
        return value + 0  # never negative zero

    return coerce


def count(option: str, minimum: int = 0) -> Callable[[str], Any]:
    """
    A whole number for C{--option}.
    """
    return _number(option, int, "a whole number", minimum)


def seconds(option: str) -> Callable[[str], Any]:
    """
    A number of seconds for C{--option}.
    """
    return _number(option, float, "a number of seconds")


def rate(option: str) -> Callable[[str], Any]:
    """
    A number a second for C{--option}.
    """
    return _number(option, float, "a number a second")


MAX_PER_PEER = [
    "max-per-peer",
    None,
    DEFAULT_MAX_PER_PEER,
    "Connections one address (one IPv6 /64) may have open, and open anew"
    " every 10 s; 0: no limit",
    count("max-per-peer"),
]


class ServiceOptions(usage.Options):
    """
    Options of one service: where it listens, and its limits.
    """

    serviceName = ""
    defaultEndpoint = ""
    description = ""
    optParameters: List[List[Any]] = [
        [
            "max-connections",
            None,
            None,
            "Connections served at once; 0: no limit [default: the open-file"
            " limit less 64, shared by the services of the process]",
            count("max-connections"),
        ],
        MAX_PER_PEER,
    ]
    sharedBy = 1
    """How many services share the process's open-file limit."""

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def getSynopsis(self) -> str:
        return f"Usage: twistd [options] sockproto {self.serviceName} [options]"

    def opt_version(self) -> None:
        """
        Display sockproto's version and exit.
        """
        print(f"sockproto {__version__} (Twisted {twisted.__version__})")
        sys.exit(0)

    def opt_listen(self, description: str) -> None:
        """Where to listen: tcp:PORT, tcp6:PORT, unix:PATH, ssl:...; repeatable"""
        self["listen"].append(check_endpoint(description))

    def postOptions(self) -> None:
        if not self["listen"]:
            self["listen"] = [self.defaultEndpoint]

    def buildFactory(self) -> ServiceFactory:
        """
        Build the factory these options describe.
        """
        raise NotImplementedError(type(self).__name__ + ".buildFactory")

    def maxConnections(self) -> int:
        """
        The limit of open connections: the option, or a share of the
        open-file limit.
        """
        limit = self["max-connections"]
        return default_max_connections(self.sharedBy) if limit is None else limit

    def _limits(self) -> Dict[str, Any]:
        return {
            "maxConnections": self.maxConnections(),
            "maxPerPeer": self["max-per-peer"],
            "timeout": self["timeout"] or None,
        }


class EchoOptions(ServiceOptions):
    """
    Options of the echo service (RFC 862).
    """

    serviceName = "echo"
    defaultEndpoint = "tcp:12346"
    description = "Run only echo: send back every byte received (RFC 862)."
    longdesc = "Send back every byte received (RFC 862). Default: tcp:12346."
    optParameters = ServiceOptions.optParameters + [
        [
            "timeout",
            None,
            300.0,
            "Close connections idle this long, in seconds; 0: never",
            seconds("timeout"),
        ],
    ]

    def buildFactory(self) -> ServiceFactory:
        return EchoFactory(**self._limits())


class CoucouOptions(ServiceOptions):
    """
    Options of the coucou message service.
    """

    serviceName = "coucou"
    defaultEndpoint = "tcp:12345"
    description = "Run only coucou: print every message received."
    longdesc = (
        "Print each message received on standard output, after the sender's"
        " address: a message ends at a line end or at end of stream."
        " Default: tcp:12345."
    )
    optParameters = ServiceOptions.optParameters + [
        [
            "max-size",
            None,
            140,
            "Longest message accepted, in bytes (1 or more)",
            count("max-size", 1),
        ],
        [
            "rate-limit",
            None,
            5.0,
            "Messages a second per client; 0: no limit",
            rate("rate-limit"),
        ],
        [
            "timeout",
            None,
            60.0,
            "Drop clients silent this long, in seconds; 0: never",
            seconds("timeout"),
        ],
    ]

    def buildFactory(self) -> ServiceFactory:
        return CoucouServerFactory(
            maxSize=self["max-size"], rateLimit=self["rate-limit"], **self._limits()
        )


class ChatOptions(ServiceOptions, strcred.AuthOptionMixin):
    """
    Options of the chat service.
    """

    serviceName = "chat"
    defaultEndpoint = "tcp:12347"
    description = "Run only chat: a multi-user line chat for telnet and nc."
    longdesc = (
        "A multi-user line chat for telnet, nc and 'sockproto chat'."
        " Default: tcp:12347. Registered nicknames: --auth file:PATH, a file"
        " of NAME:PASSWORD lines, read again when it changes (or on SIGHUP);"
        " --auth memory:NAME:PASSWORD also works, but every local user can"
        " read a command line (ps, /proc/PID/cmdline): use a file."
    )
    optParameters = [
        [
            "max-clients",
            None,
            None,
            "Another name of --max-connections",
            count("max-clients"),
        ],
        [
            "history",
            None,
            20,
            "Lines of a room's history shown to newcomers; 0: none",
            count("history"),
        ],
        [
            "max-rooms",
            None,
            1000,
            "Rooms that may exist at once; 0: no limit",
            count("max-rooms"),
        ],
        [
            "rate-limit",
            None,
            5.0,
            "Lines a second per client; 0: no limit",
            rate("rate-limit"),
        ],
        [
            "max-line",
            None,
            512,
            "Longest line accepted, in bytes (1 or more)",
            count("max-line", 1),
        ],
        [
            "max-output",
            None,
            256 * 1024,
            "Bytes a client may leave unread (past Twisted's 64 KiB buffer)"
            " before it is dropped; 0: drop it once that buffer is full",
            count("max-output"),
        ],
        [
            "timeout",
            None,
            3600.0,
            "Drop clients silent this long, in seconds; 0: never",
            seconds("timeout"),
        ],
    ]

    supportedInterfaces = [IUsernamePassword]

    def postOptions(self) -> None:
        super().postOptions()
        checkers = self.get("credCheckers", [])
        if len(checkers) > 1:
            raise usage.UsageError("give --auth once")
        if checkers:
            _check_accounts(checkers[0])
        clients, connections = self["max-clients"], self["max-connections"]
        if None not in (clients, connections) and clients != connections:
            raise usage.UsageError("--max-clients and --max-connections disagree")
        if clients is not None:
            self["max-connections"] = clients

    def buildFactory(self) -> ServiceFactory:
        checkers = self.get("credCheckers", [])
        return ChatFactory(
            checker=checkers[0] if checkers else None,
            maxLineLength=self["max-line"],
            rateLimit=self["rate-limit"],
            maxOutput=self["max-output"],
            historySize=self["history"],
            maxRooms=self["max-rooms"],
            **self._limits(),
        )


def _check_accounts(checker: Any) -> None:
    """
    Raise L{usage.UsageError} unless C{checker} can protect nicknames.
    """
    try:
        Accounts(checker, Clock())
    except UnsupportedCheckerError as e:
        raise usage.UsageError(str(e)) from None
    except OSError as e:
        path = getattr(checker, "filename", "")
        raise usage.UsageError(f"cannot read {path}: {_describe(e)}") from None


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
    optFlags = [[f"no-{name}", None, f"Do not run {name}"] for name in SERVICES]
    optParameters = [
        [
            "max-per-peer",
            None,
            None,
            f"--max-per-peer for every service [default: {DEFAULT_MAX_PER_PEER}]",
            count("max-per-peer"),
        ],
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

    def parseOptions(self, options: Optional[Sequence[str]] = None) -> None:
        """
        Parse, turning any usage error into one line and exit status 1.
        """
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
        if self.subCommand is None and all(self[f"no-{n}"] for n in SERVICES):
            raise usage.UsageError("every service was left out")

    def serviceOptions(self) -> List[ServiceOptions]:
        """
        The options of each service to run.
        """
        if self.subCommand is not None:
            return [self.subOptions]
        chosen = []
        for name, optionsClass in SERVICES.items():
            if self[f"no-{name}"]:
                continue
            options = optionsClass()
            args = [f"--listen={d}" for d in self[name]]
            if self["max-per-peer"] is not None:
                args.append(f"--max-per-peer={self['max-per-peer']}")
            options.parseOptions(args)
            chosen.append(options)
        return chosen


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

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except Exception as e:
            reason: Any = e
            if isinstance(e, CannotListenError) and e.socketError is not None:
                reason = e.socketError
            what = f"{self.factory.serviceName} cannot listen on {self.description}"
            startupFailed(
                f"{what}: {_describe(reason)}", self.daemon, self.logOnTerminal
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
        return port


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


def _describe(error: BaseException) -> str:
    strerror = getattr(error, "strerror", None)
    return str(strerror) if strerror else str(error) or type(error).__name__


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

    def stopService(self) -> "Deferred[Any]":
        d = super().stopService()
        d.addCallback(lambda _: self.factory.closeAll())
        return d


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
        if not self.reactor.running:
            return
        log.info("received {signal}, shutting down", signal=signal.Signals(signum).name)
        self.reactor.stop()


def makeService(options: Options, reactor: Optional[Any] = None) -> MultiService:
    """
    Build the service for C{twistd sockproto} from parsed L{Options}.
    """
    if reactor is None:
        reactor = default_reactor()
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
    for serviceOptions in chosen:
        serviceOptions.sharedBy = len(chosen)
        factory = serviceOptions.buildFactory()
        endpoints = {d: serverFromString(reactor, d) for d in serviceOptions["listen"]}
        service = ProtocolService(factory, endpoints, daemon, onTerminal)
        service.setServiceParent(top)
    return top
