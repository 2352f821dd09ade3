"""
The servers sockproto is compared with, each printing "listening on PORT":

    python benchmarks/peers.py wire-echo      twisted.protocols.wire.Echo
    python benchmarks/peers.py asyncio-echo   an asyncio echo server
    python benchmarks/peers.py twisted-chat   Twisted's twenty-line chat example
"""

import asyncio
import sys
from typing import Any, Dict

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory
from twisted.protocols import wire
from twisted.protocols.basic import LineReceiver


class Chat(LineReceiver):
    """
    The chat server of Twisted's documentation ("Writing Servers"), with
    its delimiter fixed so that it sees LF-terminated lines too.
    """

    delimiter = b"\n"

    def __init__(self, users: Dict[bytes, "Chat"]) -> None:
        self.users = users
        self.name: Any = None
        self.state = "GETNAME"

    def connectionMade(self) -> None:
        self.sendLine(b"What's your name?")

    def connectionLost(self, reason: Any = None) -> None:
        if self.name in self.users:
            del self.users[self.name]

    def lineReceived(self, line: bytes) -> None:
        line = line.rstrip(b"\r")
        if self.state == "GETNAME":
            self.handle_GETNAME(line)
        else:
            self.handle_CHAT(line)

    def handle_GETNAME(self, name: bytes) -> None:
        if name in self.users:
            self.sendLine(b"Name taken, please choose another.")
            return
        self.sendLine(b"Welcome, " + name + b"!")
        self.name = name
        self.users[name] = self
        self.state = "CHAT"

    def handle_CHAT(self, message: bytes) -> None:
        message = b"<" + self.name + b"> " + message
        for protocol in self.users.values():
            if protocol != self:
                protocol.sendLine(message)


class ChatFactory(Factory):
    def __init__(self) -> None:
        self.users: Dict[bytes, Chat] = {}

    def buildProtocol(self, addr: Any) -> Chat:
        return Chat(self.users)


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
        listen_twisted(ChatFactory())
    elif which == "asyncio-echo":
        asyncio.run(asyncio_echo())
    else:
        raise SystemExit(f"unknown peer {which!r}")


if __name__ == "__main__":
    main()
