"""
The servers sockproto is compared with, each printing "listening on PORT":

    python benchmarks/peers.py wire-echo      twisted.protocols.wire.Echo
    python benchmarks/peers.py asyncio-echo   an asyncio echo server
    python benchmarks/peers.py twisted-chat   Twisted's twenty-line chat example
"""

import asyncio
import sys
from typing import Any, List

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory
from twisted.protocols import wire
from twisted.protocols.basic import LineReceiver


class Broadcast(LineReceiver):
    """
    Twisted's twenty-line chat example (docs/core/examples/chatserver.py),
    written again here: every line goes to every client, the sender
    included, one write each, with a print for each event as the example
    has.  Its delimiter is set to LF, or it would never see a line from nc.
    """

    delimiter = b"\n"

    def connectionMade(self) -> None:
        print("new client")
        self.factory.clients.append(self)

    def connectionLost(self, reason: Any = None) -> None:
        print("client gone")
        self.factory.clients.remove(self)

    def lineReceived(self, line: bytes) -> None:
        print("line", repr(line))
        for client in self.factory.clients:
            client.transport.write(line + b"\n")


class BroadcastFactory(Factory):
    protocol = Broadcast

    def __init__(self) -> None:
        self.clients: List[Broadcast] = []


def listen_twisted(factory: Factory) -> None:
    endpoint = TCP4ServerEndpoint(reactor, 0, backlog=1024, interface="127.0.0.1")

    def listening(port: Any) -> None:
        print("listening on", port.getHost().port, flush=True)

    endpoint.listen(factory).addCallback(listening)
    reactor.run()  # type: ignore[attr-defined]


class AsyncioEcho(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def asyncio_echo() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(AsyncioEcho, "127.0.0.1", 0, backlog=1024)
    print("listening on", server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def main() -> None:
    which = sys.argv[1]
    if which == "wire-echo":
        listen_twisted(Factory.forProtocol(wire.Echo))
    elif which == "twisted-chat":
        listen_twisted(BroadcastFactory())
    elif which == "asyncio-echo":
        asyncio.run(asyncio_echo())
    else:
        raise SystemExit(f"unknown peer {which!r}")


if __name__ == "__main__":
    main()
