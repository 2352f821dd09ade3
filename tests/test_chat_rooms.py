from typing import Any, List

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from sockproto.chat import ChatEvent, ChatRoom, ChatServer, EventBatch
from sockproto.chat.interfaces import IChatMember, IChatRoom, IChatServer

from .support import Member


class RoomTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.room = ChatRoom("lobby", self.clock, historySize=3, quietAbove=3)

    def test_implementations_provide_their_interfaces(self) -> None:
        verifyObject(IChatRoom, self.room)
        verifyObject(IChatServer, ChatServer("x", self.clock))
        verifyObject(IChatMember, Member("a"))

    def test_events_of_one_turn_are_one_batch_for_everyone(self) -> None:
        a, b = Member("a"), Member("b")
        self.room.join(a)
        self.room.join(b)
        self.clock.advance(0)
        a.batches.clear()
        b.batches.clear()
        self.room.say(a, "one")
        self.room.act(b, "two")
        self.assertEqual(a.batches, [])
        self.clock.advance(0)
        self.assertEqual(len(a.batches), 1)
        self.assertIs(a.batches[0], b.batches[0])
        self.assertEqual(
            a.events(),
            [("message", "a", "one"), ("action", "b", "two")],
        )

    def test_history_is_bounded_and_holds_lines_only(self) -> None:
        a = Member("a")
        self.room.join(a)
        for text in "1234":
            self.room.say(a, text)
        history = self.successResultOf(self.room.join(Member("b")))
        self.assertEqual([e.text for e in history], ["2", "3", "4"])

    def test_large_room_stops_announcing_joins(self) -> None:
        members = [Member(f"m{i}") for i in range(5)]
        for member in members:
            self.room.join(member)
        self.clock.advance(0)
        joins = [e for e in members[0].events() if e[0] == "join"]
        self.assertEqual(len(joins), 3)
        self.room.say(members[4], "still heard")
        self.clock.advance(0)
        self.assertIn(("message", "m4", "still heard"), members[0].events())

    def test_rendered_once_per_key(self) -> None:
        calls: List[int] = []
        batch = EventBatch((ChatEvent("message", "r", "n", "t"),))

        def render(events: Any) -> bytes:
            calls.append(1)
            return b"x"

        for _ in range(3):
            self.assertEqual(batch.rendered("k", render), b"x")
        self.assertEqual(len(calls), 1)


class ServerTests(SynchronousTestCase):
    def test_guest_nicks_skip_taken_ones(self) -> None:
        server = ChatServer("x", Clock())
        a = Member("")
        a.nick = self.successResultOf(server.register(a))
        b = Member("")
        self.successResultOf(server.rename(b, "guest2"))
        b.nick = "guest2"
        c = Member("")
        self.assertEqual(self.successResultOf(server.register(c)), "guest3")

    def test_empty_rooms_are_forgotten_but_not_the_default(self) -> None:
        server = ChatServer("x", Clock())
        server.room("lobby")
        room = self.successResultOf(server.room("games"))
        member = Member("a")
        room.join(member)
        rooms = self.successResultOf(server.rooms())
        self.assertEqual(rooms, [("games", 1), ("lobby", 0)])
        room.leave(member, "bye")
        self.assertEqual(self.successResultOf(server.rooms()), [("lobby", 0)])

    def test_rename_is_announced_once_in_each_room_of_the_member(self) -> None:
        clock = Clock()
        server = ChatServer("x", clock)
        a, b = Member(""), Member("b")
        a.nick = self.successResultOf(server.register(a))
        room = self.successResultOf(server.room("lobby"))
        room.join(a)
        room.join(b)
        clock.advance(0)
        b.batches.clear()
        self.successResultOf(server.rename(a, "alice"))
        clock.advance(0)
        self.assertEqual(b.events(), [("nick", a.nick, "alice")])

    def test_taken_and_invalid_nicks_fail_with_a_chat_error(self) -> None:
        from sockproto.chat import ChatError

        server = ChatServer("x", Clock())
        a, b = Member(""), Member("")
        a.nick = self.successResultOf(server.register(a))
        b.nick = self.successResultOf(server.register(b))
        self.failureResultOf(server.rename(b, a.nick.upper()), ChatError)
        self.failureResultOf(server.rename(b, "9lives"), ChatError)
        self.failureResultOf(server.tell(b, "nobody", "hi"), ChatError)

    def test_private_message_goes_to_the_nick(self) -> None:
        server = ChatServer("x", Clock())
        a, b = Member(""), Member("")
        a.nick = self.successResultOf(server.register(a))
        b.nick = self.successResultOf(server.register(b))
        event = self.successResultOf(server.tell(a, b.nick.upper(), "psst"))
        self.assertEqual(b.private, [event])
        self.assertEqual(
            (event.nick, event.target, event.text), (a.nick, b.nick, "psst")
        )
