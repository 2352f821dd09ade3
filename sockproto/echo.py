# -*- test-case-name: tests.test_echo -*-
"""
The echo service of RFC 862: every byte comes back on the connection it
came from.
"""

from typing import Callable, Optional

from twisted.internet.interfaces import IHalfCloseableProtocol
from zope.interface import implementer

from .base import ServiceFactory, ServiceProtocol
from .options import ServiceOptions, timeout_option

__all__ = ["EchoFactory", "EchoOptions", "EchoProtocol"]


@implementer(IHalfCloseableProtocol)
class EchoProtocol(ServiceProtocol):
    """
    Send back every byte received, in order.

    Flow control: the transport is registered as its own producer, so when
    the peer does not read and the unsent output passes the transport's
    C{bufferSize} (64 KiB), the transport stops reading from the peer, and
    starts again once the output has drained.  A client that never reads
    therefore costs the server a bounded amount of memory.
    """

    _transform: Optional[Callable[[bytes], bytes]] = None

    def connectionMade(self) -> None:
        super().connectionMade()
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


class EchoOptions(ServiceOptions):
    """
    Options of the echo service (RFC 862).
    """

    serviceName = "echo"
    defaultEndpoint = "tcp:12346"
    description = "Run only echo: send back every byte received (RFC 862)."
    longdesc = "Send back every byte received (RFC 862). Default: tcp:12346."
    optParameters = [timeout_option(EchoFactory, "Close connections idle")]

    def buildFactory(self) -> ServiceFactory:
        return EchoFactory(**self.limits())
