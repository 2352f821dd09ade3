# -*- test-case-name: tests.test_service -*-
"""
The listening library: the L{twisted.application} services that put a
sockproto factory on its endpoints (L{ProtocolService}, L{EndpointService})
and the top service of C{twistd sockproto} (L{SockprotoService}).  It knows
no service: the composition root, L{sockproto.tap}, puts them together.
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

from .logs import SafeLogger
from .options import (
    check_endpoint,
    describe_error,
)
from .server import (
    ServiceFactory,
    default_reactor,
)
from .text import format_address

__all__ = [
    "EndpointService",
    "ProtocolService",
    "SockprotoService",
    "StartupError",
    "startupFailed",
]

log = SafeLogger()


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
    raise SystemExit(tell_stderr("sockproto: " + message))


def tell_stderr(message: str) -> int:
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


_MOVED = {
    "Options",
    "makeService",
    "makeWorkersParent",
    "ChatOptions",
    "CoucouOptions",
    "EchoOptions",
}


def __getattr__(name: str) -> Any:
    # Deprecated for one release: these moved to the composition root.
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import warnings

    warnings.warn(
        f"sockproto.service.{name} is deprecated: import it from sockproto.tap",
        DeprecationWarning,
        stacklevel=2,
    )
    from . import tap

    return getattr(tap, name)
