"""
Tests written for pytest, with sockproto's fixtures (see the README).
"""

import pytest_twisted
from keeping_coucou import KeepingCoucouFactory

from sockproto.coucou import send_message
from sockproto.testing import wait_for


@pytest_twisted.ensureDeferred
async def test_messages_are_kept_and_thanked(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(KeepingCoucouFactory())
    reply = await send_message(server.endpoint(), b"coucou", timeout=5)
    assert reply == b"merci\n"
    assert [message for _, message in server.factory.kept] == ["coucou"]


@pytest_twisted.ensureDeferred
async def test_fixture_server_keeps_messages(coucou_server, line_clients) -> None:  # type: ignore[no-untyped-def]
    client = await line_clients(coucou_server)
    client.send("one")
    client.send("two")
    messages = coucou_server.factory.sink.messages
    await wait_for(lambda: len(messages) == 2)
    assert messages == ["one", "two"]
