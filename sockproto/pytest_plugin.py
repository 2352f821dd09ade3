"""
pytest fixtures for sockproto protocols, registered through the C{pytest11}
entry point: installing sockproto makes them available to any test suite.

They need pytest-twisted (C{pip install sockproto[test]}), whose reactor they
run on:

    def test_echo(echo_server, line_clients):
        client = pytest_twisted.blockon(line_clients(echo_server))
        client.send("hi")
        assert pytest_twisted.blockon(client.expect("hi")) == "hi"
"""

from typing import Any, Callable, Iterator, List

import pytest
from twisted.python.failure import Failure

from .chat import ChatFactory
from .coucou import CoucouServerFactory, MessageList
from .echo import EchoFactory
from .testing import LineClient, RunningServer, connect_line_client, listen_on_loopback

__all__ = [
    "chat_server",
    "coucou_server",
    "echo_server",
    "line_clients",
    "serve",
]


def _blockon(d: Any) -> Any:
    """
    The result of C{d}: at once if it has fired (listening on TCP does, so
    L{serve} works inside a test too), else wait in pytest-twisted's reactor.
    """
    done: List[Any] = []
    d.addBoth(done.append)
    if done:
        if isinstance(done[0], Failure):
            done[0].raiseException()
        return done[0]
    import pytest_twisted

    return pytest_twisted.blockon(d)


@pytest.fixture
def serve() -> Iterator[Callable[..., RunningServer]]:
    """
    A function that starts a factory on a loopback port 0 and returns the
    L{RunningServer} at once (it may be called inside a test as well as in
    a fixture); every server it started is stopped after the test.
    """
    servers: List[RunningServer] = []

    def start(factory: Any, host: str = "127.0.0.1") -> RunningServer:
        server = _blockon(listen_on_loopback(factory, host=host))
        servers.append(server)
        return server

    yield start
    for server in servers:
        _blockon(server.stop())


@pytest.fixture
def echo_server(serve: Callable[..., RunningServer]) -> RunningServer:
    """
    sockproto's echo on a free loopback port.
    """
    return serve(EchoFactory())


@pytest.fixture
def coucou_server(serve: Callable[..., RunningServer]) -> RunningServer:
    """
    A coucou server on a free loopback port, keeping its messages in
    C{coucou_server.factory.sink.messages} instead of printing them.
    """
    return serve(CoucouServerFactory(MessageList()))


@pytest.fixture
def chat_server(serve: Callable[..., RunningServer]) -> RunningServer:
    """
    A chat server, without rate limit, on a free loopback port.
    """
    return serve(ChatFactory(rateLimit=0))


@pytest.fixture
def line_clients() -> Iterator[Callable[[RunningServer], Any]]:
    """
    A function that connects a new L{LineClient} to a L{RunningServer} and
    returns a Deferred firing with it; all are disconnected after the test.
    """
    clients: List[LineClient] = []

    def connect(server: RunningServer) -> Any:
        def keep(client: LineClient) -> LineClient:
            clients.append(client)
            return client

        return connect_line_client(server.endpoint()).addCallback(keep)

    yield connect
    for client in clients:
        if client.transport is not None and client.transport.connected:
            client.transport.loseConnection()
            _blockon(client.closed)
