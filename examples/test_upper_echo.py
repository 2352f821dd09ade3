"""
Tests written for pytest, with sockproto's fixtures (see the README).

Under pytest-twisted, a test that waits on the network is a coroutine
marked with C{pytest_twisted.ensureDeferred} (or a generator marked with
C{pytest_twisted.inlineCallbacks}); fixtures do their waiting themselves.
"""

import pytest_twisted
from upper_echo import UpperEchoFactory

from sockproto.testing import connect, written


def test_letters_come_back_upper_case() -> None:
    protocol, transport = connect(UpperEchoFactory())
    protocol.dataReceived(b"Coucou 42!")
    assert written(transport) == b"COUCOU 42!"


@pytest_twisted.ensureDeferred
async def test_over_a_real_socket(serve, line_clients) -> None:  # type: ignore[no-untyped-def]
    server = serve(UpperEchoFactory())
    client = await line_clients(server)
    client.send("hello")
    assert await client.expect("HELLO") == "HELLO"
