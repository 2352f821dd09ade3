"""
A chat with one more command: /roll NdM rolls dice for the whole room.
"""

import random
import re

from sockproto.chat import ChatFactory, ChatSession

DICE = re.compile(r"(\d{1,2})d(\d{1,3})\Z")


class DiceChatSession(ChatSession):
    random = random.Random()

    def command_roll(self, argument: str) -> None:
        """/roll NdM: roll N dice of M faces, for the room to see."""
        match = DICE.match(argument or "1d6")
        if match is None or int(match.group(1)) == 0 or int(match.group(2)) == 0:
            return self.error("usage: /roll NdM, as in /roll 2d6")
        count, faces = int(match.group(1)), int(match.group(2))
        rolls = [self.random.randint(1, faces) for _ in range(count)]
        self.act(f"rolls {argument or '1d6'}: {rolls} = {sum(rolls)}")


class DiceChatFactory(ChatFactory):
    session = DiceChatSession
