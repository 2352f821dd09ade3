"""
The chat's IRC front end.
"""

from .protocol import IrcChatFactory, IrcChatProtocol, IrcSession

__all__ = ["IrcChatFactory", "IrcChatProtocol", "IrcSession"]
