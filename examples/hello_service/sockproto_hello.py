"""
A sockproto service in a package of its own: each line gets "hello, LINE".
Its entry point (pyproject.toml, group "sockproto.services") names its
options; twistd sockproto does the rest: --listen, TLS, the limits,
--workers, --metrics, a clean stop.
"""

from sockproto.lines import LineFactory, LineProtocol
from sockproto.options import ServiceOptions, timeout_option
from sockproto.server import ServiceFactory


class HelloProtocol(LineProtocol):
    def lineReceived(self, line: bytes) -> None:
        self.send(b"hello, " + line + b"\r\n")


class HelloFactory(LineFactory):
    protocol = HelloProtocol
    serviceName = "hello"
    timeout = 300.0


class HelloOptions(ServiceOptions):
    serviceName = "hello"
    defaultEndpoint = "tcp:12349"
    description = "Run only hello: answer each line with hello."
    optParameters = [timeout_option(HelloFactory, "Drop clients silent")]

    def buildFactory(self) -> ServiceFactory:
        return HelloFactory(**self.limits())


__all__ = ["HelloFactory", "HelloOptions", "HelloProtocol"]
