"""
Chat events between processes: what is encoded decodes to the same, and
nothing read from the broker raises anything but MalformedMessageError.
"""

import json
from typing import List

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from sockproto.chat.backends.redis.wire import (
    MAX_MESSAGE,
    MalformedMessageError,
    decode_events,
    encode_events,
)
from sockproto.chat.events import ChatEvent

nicks = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,15}", fullmatch=True)
rooms = st.from_regex(r"[a-z0-9_-]{1,32}", fullmatch=True)
texts = st.text(
    alphabet=st.characters(min_codepoint=0x20, blacklist_categories=("Cs", "Cc")),
    max_size=200,
)
room_events = st.builds(
    ChatEvent,
    st.sampled_from(["message", "action", "notice", "leave", "quit"]),
    rooms,
    nicks,
    texts,
)
private_events = st.builds(
    ChatEvent,
    st.sampled_from(["private", "private_notice"]),
    st.just(""),
    nicks,
    texts,
    nicks,
)


class WireTests(SynchronousTestCase):
    def test_an_event_s_time_survives_the_trip_and_old_rows_have_none(self) -> None:
        event = ChatEvent("message", "lobby", "alice", "hi", time=1764786000.25)
        [back] = decode_events(encode_events([event]))
        self.assertEqual(back.time, 1764786000.25)
        old = b'{"v":1,"e":[["message","lobby","alice","hi",""]]}'
        self.assertEqual(decode_events(old)[0].time, 0.0)
        for bad in ("true", '"x"', "-1", "1e300", "NaN"):
            row = '{"v":1,"e":[["message","lobby","alice","hi","",' + bad + "]]}"
            self.assertRaises(MalformedMessageError, decode_events, row.encode())

    @given(st.lists(st.one_of(room_events, private_events), max_size=20))
    def test_events_survive_the_trip(self, events: List[ChatEvent]) -> None:
        decoded = decode_events(encode_events(events))
        self.assertEqual(
            [(e.kind, e.room, e.nick) for e in decoded],
            [(e.kind, e.room, e.nick) for e in events],
        )

    def test_text_is_cleaned_as_a_client_line_is(self) -> None:
        data = b'{"v":1,"e":[["message","lobby","mallory","a\\u001b[2Jb\\u202e",""]]}'
        [event] = decode_events(data)
        self.assertEqual(event.text, "ab")

    def test_malformed_messages_say_why(self) -> None:
        for data, why in [
            (b"x" * (MAX_MESSAGE + 1), "more than"),
            (b"\xff", "not JSON"),
            (b"[]", "not a version 1 message"),
            (b'{"v":2,"e":[]}', "not a version 1 message"),
            (b'{"v":1}', "no event list"),
            (b'{"v":1,"e":[1]}', "not an event"),
            (b'{"v":1,"e":[["boom","lobby","a","",""]]}', "unknown kind"),
            (b'{"v":1,"e":[["message","lobby","-!-","",""]]}', "invalid nickname"),
            (b'{"v":1,"e":[["message","#x y","a","",""]]}', "invalid room"),
            (b'{"v":1,"e":[["private","lobby","a","","b"]]}', "invalid room"),
            (b'{"v":1,"e":[["nick","lobby","a","not valid",""]]}', "invalid new"),
        ]:
            with self.assertRaises(MalformedMessageError) as caught:
                decode_events(data)
            self.assertIn(why, str(caught.exception))


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(st.text(max_size=3), inner, max_size=4),
    ),
    max_leaves=20,
)
broker_messages = st.one_of(
    st.binary(max_size=400),
    json_values.map(lambda value: json.dumps({"v": 1, "e": value}).encode()),
)


@pytest.mark.fuzz
class WireFuzzTests(SynchronousTestCase):
    @given(broker_messages)
    def test_anything_from_the_broker_is_decoded_or_refused(self, data: bytes) -> None:
        try:
            decode_events(data)
        except MalformedMessageError:
            pass
