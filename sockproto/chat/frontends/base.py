# -*- test-case-name: tests.test_chat_hub -*-
"""
What every front end's factory shares: it is handed the chat's hub
(L{Chat}), takes the chat's limits unless told its own, and builds each
connection's session from the hub, so that a session subclass reaches
every front end.
"""

from typing import Any, Dict, List

from twisted.application.service import IService

from ...lines import LineFactory
from ..hub import Chat
from ..interfaces import IChatClient, IChatServer
from ..session import ChatSession

__all__ = ["FrontEndFactory"]


class FrontEndFactory(LineFactory):
    """
    The factory of a front end of C{chat} (lines, the web page, IRC): its
    members are in the rooms of C{chat}, with the same accounts, session
    class and limits.

    @ivar chat: the L{Chat}.
    @ivar maxOutput: bytes a client may leave unread, past the transport's
        own buffer, before it is dropped.
    """

    maxOutput = Chat.maxOutput

    def __init__(self, chat: Any, **overrides: Any) -> None:
        """
        @param chat: the L{Chat}; a front-end factory is taken for its
            chat, as before the hub, for one release.
        @param overrides: limits of this front end's own (C{timeout},
            C{maxLineLength}, ...) instead of C{chat}'s.
        """
        if not isinstance(chat, Chat):
            chat = chat.chat  # another front end's factory
        limits: Dict[str, Any] = chat.limits()
        limits.update(overrides)
        lineLimits = {
            name: limits.pop(name)
            for name in ("maxLineLength", "rateLimit", "maxOutput")
        }
        super().__init__(**limits)
        for name, value in lineLimits.items():
            if value is not None:
                setattr(self, name, value)
        self.chat: Chat = chat

    @property
    def server(self) -> IChatServer:
        """The chat's back end."""
        return self.chat.server

    @property
    def accounts(self) -> Any:
        """The chat's registered nicknames (L{Accounts}), or None."""
        return self.chat.accounts

    def buildSession(self, client: IChatClient) -> ChatSession:
        """
        Make the session of a connection: the chat's session class.
        """
        return self.chat.buildSession(client)

    def closeAll(self) -> Any:
        self.chat.flush()
        return super().closeAll()

    def reload(self) -> None:
        """
        Nothing to read again: the chat's own factory (the line front
        end's) reloads the accounts every front end shares.
        """

    def supportServices(self) -> List[IService]:
        """
        None: the chat's own factory runs the back end's.
        """
        return []
