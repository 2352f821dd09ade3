"""
The chat protocol, in memory: every command and notice.
"""

from typing import Any, List

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from sockproto.chat import IChatMember
from sockproto.testing import ChatOnClock


def Chat(**options: Any) -> ChatOnClock:
    """
    A chat on a Clock (C{history}: lines of history kept).
    """
    if "history" in options:
        options["historySize"] = options.pop("history")
    return ChatOnClock(**options)


def lines(transport: StringTransport) -> List[str]:
    """
    The lines written since the last call.
    """
    data = transport.value().decode("utf-8")
    transport.clear()
    assert data == "" or data.endswith("\r\n"), data
    return data.split("\r\n")[:-1]


class WelcomeTests(SynchronousTestCase):
    def test_newcomer_gets_welcome_guest_nick_and_who_is_here(self) -> None:
        chat = Chat()
        alice, a = chat.join()
        self.assertEqual(
            lines(a),
            [
                "-!- Welcome to test chat, guest1. Type /help for commands.",
                "-!- guest1 joined #lobby",
                "-!- you are in #lobby, alone",
            ],
        )
        bob, b = chat.join()
        self.assertIn("-!- you are in #lobby with guest1", lines(b))
        self.assertEqual(lines(a), ["-!- guest2 joined #lobby"])

    def test_newcomer_gets_recent_history(self) -> None:
        chat = Chat(history=2)
        alice, a = chat.join()
        chat.send(alice, "one", "two", "three")
        bob, b = chat.join()
        self.assertEqual(
            lines(b)[1:],
            [
                "-!- guest2 joined #lobby",
                "-!- you are in #lobby with guest1",
                "-!- last 2 lines of #lobby:",
                "<guest1> two",
                "<guest1> three",
            ],
        )

    def test_protocol_provides_member_interface(self) -> None:
        alice, _ = Chat().join()
        verifyObject(IChatMember, alice)


class MessageTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.chat = Chat()
        self.alice, self.a = self.chat.join()
        self.bob, self.b = self.chat.join()
        lines(self.a), lines(self.b)

    def test_line_goes_to_everyone_in_the_room_sender_included(self) -> None:
        self.chat.send(self.alice, "hello")
        self.assertEqual(lines(self.a), ["<guest1> hello"])
        self.assertEqual(lines(self.b), ["<guest1> hello"])

    def test_crlf_and_lf_both_end_lines(self) -> None:
        self.alice.dataReceived(b"one\r\ntwo\n")
        self.chat.clock.advance(0)
        self.assertEqual(lines(self.b), ["<guest1> one", "<guest1> two"])

    def test_double_slash_sends_a_line_starting_with_slash(self) -> None:
        self.chat.send(self.alice, "//etc/passwd is a file")
        self.assertEqual(lines(self.b), ["<guest1> /etc/passwd is a file"])

    def test_blank_lines_are_ignored(self) -> None:
        self.chat.send(self.alice, "", "   ")
        self.assertEqual(lines(self.b), [])

    def test_control_characters_never_reach_others(self) -> None:
        self.alice.dataReceived(b"\x1b[2J\x1b[31mred\x07\x08 \xff\xfe\n")
        self.chat.clock.advance(0)
        [line] = lines(self.b)
        self.assertEqual(line, "<guest1> red \ufffd\ufffd")

    def test_many_lines_in_one_turn_are_one_write_per_client(self) -> None:
        writes: List[bytes] = []
        self.b.write = writes.append  # type: ignore[method-assign]
        self.alice.dataReceived(b"".join(b"line %d\n" % i for i in range(50)))
        self.chat.clock.advance(0)
        self.assertEqual(len(writes), 1)
        self.assertEqual(writes[0].count(b"\r\n"), 50)

    def test_batch_is_encoded_once_for_all_clients(self) -> None:
        carol, c = self.chat.join()
        writes: List[bytes] = []
        for transport in (self.a, self.b, c):
            transport.write = writes.append  # type: ignore[method-assign]
        self.chat.send(self.alice, "shared")
        self.assertEqual(len(writes), 3)
        self.assertIs(writes[0], writes[1])
        self.assertIs(writes[1], writes[2])


class CommandTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.chat = Chat()
        self.alice, self.a = self.chat.join()
        self.bob, self.b = self.chat.join()
        lines(self.a), lines(self.b)

    def test_nick_changes_and_is_announced(self) -> None:
        self.chat.send(self.alice, "/nick Alice")
        self.assertEqual(lines(self.b), ["-!- guest1 is now known as Alice"])
        self.chat.send(self.alice, "hi")
        self.assertEqual(lines(self.b), ["<Alice> hi"])

    def test_nick_is_unique_ignoring_case(self) -> None:
        self.chat.send(self.alice, "/nick Alice")
        lines(self.a), lines(self.b)
        self.chat.send(self.bob, "/nick alice")
        self.assertEqual(lines(self.b), ["-!- error: nickname alice is taken"])
        self.assertEqual(self.bob.nick, "guest2")

    def test_own_nick_case_can_change(self) -> None:
        self.chat.send(self.alice, "/nick alice", "/nick ALICE")
        self.assertEqual(self.alice.nick, "ALICE")

    def test_invalid_nicks_are_refused(self) -> None:
        for bad in ["1abc", "a b", "x" * 17, "é", "a.b"]:
            self.chat.send(self.alice, f"/nick {bad}")
            [line] = lines(self.a)
            self.assertTrue(line.startswith("-!- error: "), line)
        self.assertEqual(self.alice.nick, "guest1")

    def test_nobody_can_take_a_guest_nick_in_use(self) -> None:
        self.chat.send(self.alice, "/nick guest2")
        self.assertEqual(lines(self.a), ["-!- error: nickname guest2 is taken"])

    def test_me_is_an_action(self) -> None:
        self.chat.send(self.alice, "/me waves")
        self.assertEqual(lines(self.b), ["* guest1 waves"])

    def test_who_lists_the_room(self) -> None:
        self.chat.send(self.alice, "/who")
        self.assertEqual(lines(self.a), ["-!- in #lobby (2): guest1, guest2"])

    def test_private_message_reaches_only_its_target(self) -> None:
        carol, c = self.chat.join()
        lines(self.a), lines(self.b), lines(c)
        self.chat.send(self.alice, "/msg GUEST2 psst")
        self.assertEqual(lines(self.b), ["*guest1* -> *guest2* psst"])
        self.assertEqual(lines(self.a), ["*guest1* -> *guest2* psst"])
        self.assertEqual(lines(c), [])

    def test_private_message_to_unknown_nick(self) -> None:
        self.chat.send(self.alice, "/msg nobody hi")
        self.assertEqual(lines(self.a), ["-!- error: no such nickname: nobody"])

    def test_join_part_and_rooms(self) -> None:
        self.chat.send(self.alice, "/join #Games")
        self.assertEqual(lines(self.b), ["-!- guest1 left #lobby (joined #games)"])
        self.assertEqual(
            lines(self.a), ["-!- guest1 joined #games", "-!- you are in #games, alone"]
        )
        self.chat.send(self.bob, "only lobby")
        self.assertEqual(lines(self.b), ["<guest2> only lobby"])
        self.assertEqual(lines(self.a), [])
        self.chat.send(self.alice, "/rooms")
        self.assertEqual(lines(self.a), ["-!- rooms (2): #games (1), #lobby (1)"])
        self.chat.send(self.alice, "/part")
        self.assertEqual(lines(self.b), ["-!- guest1 joined #lobby"])
        self.chat.send(self.alice, "/rooms")
        self.assertEqual(lines(self.a)[-1], "-!- rooms (1): #lobby (2)")

    def test_join_errors(self) -> None:
        self.chat.send(self.alice, "/join", "/join #lobby", "/join bad name!", "/part")
        self.assertEqual(
            lines(self.a),
            [
                "-!- error: usage: /join ROOM (1 to 32 ASCII letters, digits, _ or -)",
                "-!- error: you are already in #lobby",
                "-!- error: usage: /join ROOM (1 to 32 ASCII letters, digits, _ or -)",
                "-!- error: you are in #lobby already; /quit leaves the chat",
            ],
        )

    def test_quit_with_reason(self) -> None:
        self.chat.send(self.alice, "/quit off to lunch")
        self.assertEqual(lines(self.a), ["-!- bye"])
        self.assertTrue(self.a.disconnecting)
        self.alice.connectionLost()
        self.chat.clock.advance(0)
        self.assertEqual(lines(self.b), ["-!- guest1 left #lobby (off to lunch)"])
        self.assertIsNone(self.chat.factory.server.find("guest1"))

    def test_connection_lost_is_announced(self) -> None:
        self.alice.connectionLost()
        self.chat.clock.advance(0)
        self.assertEqual(lines(self.b), ["-!- guest1 left #lobby (connection lost)"])

    def test_unknown_command_and_bad_arguments_keep_the_connection(self) -> None:
        self.chat.send(self.alice, "/frob", "/msg", "/me", "/nick", "/", "/!x")
        self.assertEqual(
            lines(self.a),
            [
                "-!- error: unknown command /frob (try /help)",
                "-!- error: usage: /msg NICK TEXT",
                "-!- error: usage: /me ACTION",
                "-!- error: usage: /nick NAME [PASSWORD]",
                "-!- error: unknown command / (try /help)",
                "-!- error: unknown command /!x (try /help)",
            ],
        )
        self.assertFalse(self.a.disconnecting)

    def test_help_lists_every_command(self) -> None:
        self.chat.send(self.alice, "/help")
        help = "\n".join(lines(self.a))
        for command in ["/nick", "/me", "/who", "/msg", "/join", "/part", "/rooms"]:
            self.assertIn(command, help)
        self.assertIn("/quit", help)
        self.assertIn("/help", help)


class LimitTests(SynchronousTestCase):
    def test_long_line_gets_error_and_connection_stays_usable(self) -> None:
        chat = Chat(maxLineLength=10)
        alice, a = chat.join()
        lines(a)
        chat.send(alice, "x" * 11, "short")
        self.assertEqual(
            lines(a),
            [
                "-!- error: line too long (11 bytes, limit 10): dropped",
                "<guest1> short",
            ],
        )

    def test_endless_line_disconnects_without_buffering_it(self) -> None:
        chat = Chat(maxLineLength=10)
        alice, a = chat.join()
        lines(a)
        for _ in range(100):
            alice.dataReceived(b"x" * 5)
        self.assertEqual(alice.parser.pending, b"")
        self.assertTrue(a.disconnecting)
        self.assertIn(
            "-!- error: too much data without a line end: disconnecting", lines(a)
        )

    def test_lines_over_the_rate_limit_wait_and_one_notice_per_burst(self) -> None:
        chat = Chat(rateLimit=1)
        alice, a = chat.join()
        bob, b = chat.join()
        lines(a), lines(b)
        chat.send(alice, *[f"line {i}" for i in range(7)])
        self.assertEqual(len(lines(b)), 5)  # the burst
        self.assertEqual(
            lines(a)[-1], "-!- slow down: over 1 lines a second, your lines wait"
        )
        self.assertEqual(a.producerState, "paused")  # reading stopped
        chat.clock.advance(1)
        self.assertEqual(lines(b), ["<guest1> line 5"])
        chat.clock.advance(1)
        self.assertEqual(lines(b), ["<guest1> line 6"])
        self.assertEqual(a.producerState, "producing")
        self.assertNotIn("slow down", " ".join(lines(a)))

    def test_blank_lines_count_against_the_rate_limit(self) -> None:
        chat = Chat(rateLimit=1)
        alice, a = chat.join()
        bob, b = chat.join()
        lines(b)
        chat.send(alice, *[""] * 5, "after blanks")
        self.assertEqual(lines(b), [])
        chat.clock.advance(1)
        self.assertEqual(lines(b), ["<guest1> after blanks"])

    def test_sustained_flood_is_disconnected_and_output_stays_small(self) -> None:
        chat = Chat(rateLimit=5)
        alice, a = chat.join()
        bob, b = chat.join()
        lines(a), lines(b)
        chunks = 0
        while not a.disconnecting:  # the transport would stop reading: not here
            alice.dataReceived(b"a\n" * 100)
            chunks += 1
        chat.clock.advance(0)
        self.assertLess(chunks, 50)
        self.assertEqual(
            lines(a)[-2:],
            [
                "-!- slow down: over 5 lines a second, your lines wait",
                "-!- error: excess flood: disconnecting",
            ],
        )
        self.assertEqual(len(lines(b)), 10)  # the burst, then nothing

    def test_one_read_of_flood_is_not_even_parsed(self) -> None:
        chat = Chat(rateLimit=5)
        alice, a = chat.join()
        lines(a)
        alice.dataReceived(b"a\n" * 32768)
        self.assertTrue(a.disconnecting)
        self.assertEqual(lines(a), ["-!- error: excess flood: disconnecting"])

    def test_max_clients_says_server_full(self) -> None:
        chat = Chat(maxConnections=1)
        chat.join()
        protocol = chat.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertEqual(
            transport.value(), b"-!- error: server full, try again later\r\n"
        )
        self.assertTrue(transport.disconnecting)

    def test_closing_unregisters_the_producer_so_tls_can_shut_down(self) -> None:
        chat = Chat()
        alice, a = chat.join()
        self.assertIs(a.producer, alice)
        chat.send(alice, "/quit")
        self.assertTrue(a.disconnecting)
        self.assertIsNone(a.producer)

    def test_idle_client_is_dropped(self) -> None:
        chat = Chat(timeout=60)
        alice, a = chat.join()
        chat.clock.advance(61)
        self.assertTrue(a.disconnecting)

    def test_slow_reader_is_dropped_past_its_bound(self) -> None:
        chat = Chat(maxOutput=1000)
        alice, a = chat.join()
        bob, b = chat.join()
        bob.pauseProducing()  # as the transport does when its buffer fills
        for _ in range(20):
            chat.send(alice, "y" * 100)
        self.assertFalse(a.disconnecting)
        self.assertTrue(b.disconnecting)  # StringTransport's abortConnection

    def test_reader_that_catches_up_is_kept(self) -> None:
        chat = Chat(maxOutput=1000)
        alice, a = chat.join()
        bob, b = chat.join()
        for _ in range(20):
            bob.pauseProducing()
            chat.send(alice, "y" * 100)
            bob.resumeProducing()
        self.assertFalse(b.disconnecting)

    def test_shutdown_says_goodbye_to_everyone(self) -> None:
        chat = Chat()
        clients = [chat.join() for _ in range(3)]
        for _, transport in clients:
            lines(transport)
        d = chat.factory.closeAll()
        for protocol, transport in clients:
            self.assertEqual(lines(transport)[0], "-!- server shutting down")
            self.assertTrue(transport.disconnecting)
            protocol.connectionLost()
        self.successResultOf(d)


class ChunkingTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=300), st.lists(st.integers(min_value=0), max_size=12))
    def test_any_chunking_gives_the_same_output_and_nothing_raises(
        self, data: bytes, cuts: List[int]
    ) -> None:
        def run(pieces: List[bytes]) -> Any:
            chat = Chat(maxLineLength=40)
            alice, a = chat.join()
            bob, b = chat.join()
            for piece in pieces:
                alice.dataReceived(piece)
                chat.clock.advance(0)
            return a.value(), b.value(), a.disconnecting

        points = sorted({c % (len(data) + 1) for c in cuts})
        pieces = [data[x:y] for x, y in zip([0] + points, points + [len(data)])]
        self.assertEqual(run(pieces), run([data]))

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.sampled_from(
                [
                    b"/nick a\n",
                    b"/join x\n",
                    b"/part\n",
                    b"/msg guest2 hi\n",
                    b"/me y\n",
                    b"hello\r\n",
                    b"\xff\x1b[2J\n",
                    b"/quit\n",
                    b"/who\n",
                    b"x" * 30,
                ]
            ),
            max_size=30,
        ),
        st.lists(st.integers(min_value=0), max_size=12),
    )
    def test_any_chunking_of_commands_gives_the_same_output(
        self, parts: List[bytes], cuts: List[int]
    ) -> None:
        data = b"".join(parts)
        self.test_any_chunking_gives_the_same_output_and_nothing_raises.hypothesis.inner_test(  # type: ignore[attr-defined]
            self, data, cuts
        )


class ForgeryTests(SynchronousTestCase):
    """
    Every line from the server starts with "-!- ", which no user can make
    a line start with.
    """

    def setUp(self) -> None:
        self.chat = Chat()
        self.alice, self.a = self.chat.join()
        self.bob, self.b = self.chat.join()
        lines(self.a), lines(self.b)

    def test_server_lines_start_with_the_notice_marker(self) -> None:
        self.chat.send(self.alice, "/nick alice", "/who", "/bogus", "/join x")
        for line in lines(self.a) + lines(self.b):
            self.assertTrue(line.startswith("-!- "), line)

    def test_user_lines_never_start_with_the_notice_marker(self) -> None:
        forged = "-!- server shutting down"
        self.chat.send(self.alice, "/nick server", forged, f"/me {forged}")
        self.chat.send(self.alice, f"/msg guest2 {forged}", f"/quit {forged}")
        self.alice.connectionLost()
        self.chat.clock.advance(0)
        self.assertEqual(
            lines(self.b),
            [
                "-!- guest1 is now known as server",
                "<server> -! - server shutting down",
                "* server -! - server shutting down",
                "*server* -> *guest2* -! - server shutting down",
                "-!- server left #lobby (-! - server shutting down)",
            ],
        )

    def test_padding_cannot_put_a_notice_on_the_next_screen_row(self) -> None:
        self.chat.send(self.alice, " " * 70 + "-!--!- bob left #lobby")
        [line] = lines(self.b)
        self.assertNotIn("-!-", line)


class LookAlikeNickTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.chat = Chat()
        self.alice, self.a = self.chat.join()
        self.bob, self.b = self.chat.join()
        self.chat.send(self.alice, "/nick alice")
        lines(self.a), lines(self.b)

    def test_look_alike_nicks_are_taken(self) -> None:
        for nick in ["aIice", "a1ice", "ALICE", "aIlce"]:
            self.chat.send(self.bob, f"/nick {nick}")
            [line] = lines(self.b)
            self.assertTrue(line.startswith(f"-!- error: nickname {nick} is taken"))
        self.assertEqual(self.bob.nick, "guest2")

    def test_rn_and_m_vv_and_w_o_and_0_look_alike(self) -> None:
        self.chat.send(self.alice, "/nick worm")
        lines(self.a), lines(self.b)
        for nick in ["vvorm", "worrn", "w0rm"]:
            self.chat.send(self.bob, f"/nick {nick}")
            self.assertIn("is taken", lines(self.b)[0])

    def test_private_message_needs_the_exact_nick(self) -> None:
        self.chat.send(self.bob, "/msg aIice hi")
        self.assertEqual(lines(self.b), ["-!- error: no such nickname: aIice"])
        self.assertEqual(lines(self.a), [])

    def test_same_nick_again_is_an_error_not_an_announcement(self) -> None:
        self.chat.send(self.alice, "/nick alice")
        self.assertEqual(lines(self.a), ["-!- error: you are alice already"])
        self.assertEqual(lines(self.b), [])


class RoomLifeTests(SynchronousTestCase):
    def test_a_room_is_forgotten_with_its_history_when_its_last_member_leaves(
        self,
    ) -> None:
        chat = Chat()
        alice, a = chat.join()
        chat.send(alice, "/join secret", "remember me", "/part")
        self.assertEqual(
            self.successResultOf(chat.factory.server.rooms()), [("lobby", 1)]
        )
        lines(a)
        chat.send(alice, "/join secret")
        self.assertNotIn("remember me", " ".join(lines(a)))

    def test_rooms_are_bounded(self) -> None:
        chat = Chat(maxRooms=3)
        alice, a = chat.join()
        bob, b = chat.join()
        chat.send(alice, "/join one")
        chat.send(bob, "/join two")
        lines(a), lines(b)
        chat.send(bob, "/join three")
        self.assertEqual(
            lines(b)[-1], "-!- error: too many rooms (3): join one of /rooms"
        )
        self.assertEqual(bob.room.name, "two")  # still where it was
        chat.send(bob, "/join one")
        self.assertEqual(bob.room.name, "one")

    def test_rooms_list_is_capped(self) -> None:
        chat = Chat()
        for n in range(60):
            client, _ = chat.join()
            chat.send(client, f"/join r{n}")
        alice, a = chat.join()
        lines(a)
        chat.send(alice, "/rooms")
        [line] = lines(a)
        self.assertTrue(line.startswith("-!- rooms (61): "), line)
        self.assertTrue(line.endswith(" and 11 more"), line)

    def test_closing_member_gets_nothing_and_room_keeps_delivering(self) -> None:
        chat = Chat()
        clients = [chat.join() for _ in range(3)]
        for _, transport in clients[:2]:
            transport.loseConnection()
        for protocol, _ in clients[:2]:
            protocol.connectionLost()
        survivor, s = clients[2]
        chat.clock.advance(0)
        lines(s)
        chat.send(survivor, "still here")
        self.assertEqual(lines(s), ["<guest3> still here"])
        self.assertEqual(chat.factory.server.getRoom("lobby").memberNicks(), ["guest3"])
        self.assertEqual(len(chat.factory.connections), 1)


class WordingTests(SynchronousTestCase):
    def test_one_line_of_history_is_singular(self) -> None:
        chat = Chat()
        alice, _ = chat.join()
        chat.send(alice, "only one")
        bob, b = chat.join()
        self.assertIn("-!- last 1 line of #lobby:", lines(b))

    def test_help_lists_double_slash(self) -> None:
        chat = Chat()
        alice, a = chat.join()
        lines(a)
        chat.send(alice, "/help")
        self.assertIn("-!- //TEXT: say a line that starts with /, as /TEXT", lines(a))

    def test_on_shutdown_everyone_is_told_and_nobody_sees_the_others_leave(
        self,
    ) -> None:
        chat = Chat()
        clients = [chat.join() for _ in range(3)]
        for _, transport in clients:
            transport.clear()
        chat.factory.closeAll()
        for protocol, _ in clients:
            protocol.connectionLost()
        chat.clock.advance(0)
        for _, transport in clients:
            self.assertEqual(lines(transport), ["-!- server shutting down"])
