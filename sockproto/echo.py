# -*- test-case-name: tests.test_echo -*-
"""
The echo service of RFC 862: every byte comes back on the connection it
came from (TCP), and every datagram to its sender (UDP).
"""

import re
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.application.internet import UDPServer
from twisted.application.service import IService
from twisted.internet import tcp
from twisted.internet.error import CannotListenError, MessageLengthError
from twisted.internet.interfaces import IHalfCloseableProtocol, IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.python import usage
from zope.interface import implementer

from .logs import SafeLogger
from .options import ServiceOptions, describe_error, timeout_option
from .server import ServiceFactory, ServiceProtocol, default_reactor
from .service import startupFailed

__all__ = [
    "EchoDatagramProtocol",
    "EchoFactory",
    "EchoOptions",
    "EchoProtocol",
    "UDPEchoService",
]


MIN_READ: int = tcp.Connection.bufferSize
"""What Twisted reads from a socket at a time (64 KiB)."""


@implementer(IHalfCloseableProtocol)
class EchoProtocol(ServiceProtocol):
    """
    Send back every byte received, in order.

    Flow control: the transport is registered as its own producer, so when
    the peer does not read and the unsent output passes the transport's
    C{bufferSize} (64 KiB, up to L{readSize} while reads grow), the
    transport stops reading from the peer, and starts again once the output
    has drained.  A client that never reads therefore costs the server a
    bounded amount of memory.
    """

    readSize = 256 * 1024
    """
    On plain TCP, the most read from the socket at a time.  Twisted reads
    64 KiB; while the peer keeps sending more, reads grow (up to this), as
    fewer, larger reads and sends move bulk data faster.  Small messages
    keep small reads: a large read buffer costs each read its allocation.
    """

    _transform: Optional[Callable[[bytes], bytes]] = None
    _adaptive = False

    def connectionMade(self) -> None:
        super().connectionMade()
        self._adaptive = self._eager and self.readSize > MIN_READ
        self.transport.registerProducer(self.transport, True)
        # Only a transform other than the identity costs a call per chunk;
        # one set on the instance counts as much as one on a subclass.
        transform = self.transform
        if getattr(transform, "__func__", None) is not EchoProtocol.transform:
            self._transform = transform

    def dataReceived(self, data: bytes) -> None:
        """
        Called with each chunk received; writes back L{transform}C{(data)}.
        """
        # The hot path: no call that is not needed.
        size = len(data)
        self.factory.stats.bytesIn += size
        if self._adaptive:
            # The next read: twice this one, from Twisted's 64 KiB to readSize.
            self.transport.bufferSize = min(max(2 * size, MIN_READ), self.readSize)
        if self.timeOut is not None:
            self.resetTimeout()
        if self._transform is not None:
            data = self._transform(data)
        self.send(data)

    def transform(self, data: bytes) -> bytes:
        """
        What to send back for C{data}: the same bytes.  Override to change
        them; keep the length if flow control should stay exact.
        """
        return data

    def readConnectionLost(self) -> None:
        """
        The peer shut down its sending side: send what remains, then close.
        """
        self.transport.unregisterProducer()
        self.closeConnection()

    def writeConnectionLost(self) -> None:
        """
        The peer stopped reading: nothing more can be sent, so close.
        """
        self.transport.unregisterProducer()
        self.closeConnection()


class EchoFactory(ServiceFactory):
    """
    Serve L{EchoProtocol}.
    """

    protocol = EchoProtocol  # type: ignore[assignment]
    serviceName = "echo"
    timeout: Optional[float] = 300.0


MAX_DATAGRAM = 65507
"""The largest UDP payload (over IPv4)."""


def datagram_peer(address: Tuple[str, int]) -> str:
    """
    A UDP sender's address as people write it: C{127.0.0.1:80}, C{[::1]:80}.
    """
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class EchoDatagramProtocol(DatagramProtocol):
    """
    Echo over UDP (RFC 862): each datagram goes back to its sender as it
    came, so a reply is never larger than its request (no amplification).
    Each sender is logged at most once every L{logInterval} seconds.
    """

    log = SafeLogger()
    maxDatagram = MAX_DATAGRAM
    logInterval = 60.0
    maxRemembered = 10000
    """Senders remembered for the log's rate bound."""

    def __init__(self, clock: Optional[IReactorTime] = None) -> None:
        self.clock = clock if clock is not None else default_reactor()
        self.logged: Dict[Tuple[str, int], float] = {}

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if len(data) > self.maxDatagram:
            return
        self.noteSender(addr)
        assert self.transport is not None
        try:
            self.transport.write(data, addr)
        except (MessageLengthError, OSError) as e:
            self.log.info(
                "echo: cannot answer {peer} over UDP: {error}",
                peer=datagram_peer(addr),
                error=describe_error(e),
            )

    def noteSender(self, addr: Tuple[str, int]) -> None:
        """
        Log a datagram from C{addr}, unless it was logged in the last
        L{logInterval} seconds.
        """
        now = self.clock.seconds()
        last = self.logged.get(addr)
        if last is not None and now - last < self.logInterval:
            return
        if len(self.logged) >= self.maxRemembered:
            horizon = now - self.logInterval
            self.logged = {a: t for a, t in self.logged.items() if t > horizon}
        self.logged[addr] = now
        self.log.info("echo datagram from {peer}", peer=datagram_peer(addr))


class UDPEchoService(UDPServer):
    """
    Echo over UDP on one port: logs the address once listening, and turns
    a port that cannot be had into one line (see
    L{sockproto.service.startupFailed}).
    """

    log = SafeLogger()
    daemon = False
    logOnTerminal = False

    def __init__(self, port: int, interface: str = "") -> None:
        super().__init__(
            port,
            EchoDatagramProtocol(),
            interface=interface,
            maxPacketSize=MAX_DATAGRAM + 1,
        )
        self.description = f"udp:{port}" + (
            f":interface={interface}" if interface else ""
        )
        self.setName(f"echo on {self.description}")

    def startService(self) -> None:
        if self._port is None:  # not started by twistd's privileged step
            self.privilegedStartService()
        super().startService()

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            reason = e.socketError if e.socketError is not None else e
            message = (
                f"echo cannot listen on {self.description}: {describe_error(reason)}"
            )
            startupFailed(message, self.daemon, self.logOnTerminal)
        host = self._port.getHost()  # type: ignore[union-attr]
        self.log.info(
            "echo listening on udp {address}",
            address=datagram_peer((host.host, host.port)),
        )


def parse_udp(text: str) -> Tuple[int, str]:
    """
    C{PORT} or C{PORT:interface=ADDRESS} (colons of an IPv6 address escaped
    with backslashes, as in endpoint strings): the port and the interface.
    """
    parts = [part.replace("\\:", ":") for part in re.split(r"(?<!\\):", text)]
    try:
        port = int(parts[0])
    except ValueError:
        raise usage.UsageError(
            f"--udp takes PORT[:interface=ADDRESS], not {text!r}"
        ) from None
    if not 0 <= port <= 65535:
        raise usage.UsageError(f"--udp: the port must be from 0 to 65535, not {port}")
    interface = ""
    for part in parts[1:]:
        name, equals, value = part.partition("=")
        if name != "interface" or not equals:
            raise usage.UsageError(
                f"--udp takes PORT[:interface=ADDRESS], not {text!r}"
            )
        interface = value
    return port, interface


class EchoOptions(ServiceOptions):
    """
    Options of the echo service (RFC 862).
    """

    serviceName = "echo"
    defaultEndpoint = "tcp:12346"
    description = "Run only echo: send back every byte received (RFC 862)."
    longdesc = "Send back every byte received (RFC 862). Default: tcp:12346."
    optParameters = [timeout_option(EchoFactory, "Close connections idle")]

    def __init__(self) -> None:
        super().__init__()
        self["udp"] = []

    def opt_udp(self, text: str) -> None:
        self["udp"].append(parse_udp(text))

    def buildFactory(self) -> ServiceFactory:
        return EchoFactory(**self.limits())

    def extraServices(self) -> List[IService]:
        return [UDPEchoService(port, interface) for port, interface in self["udp"]]


EchoOptions.opt_udp.__doc__ = (
    "Also echo datagrams on this UDP port: PORT or PORT:interface=ADDRESS; repeatable"
)
