"""
The chat's web front end: C{http} is the page and the HTTP side until the
upgrade, C{protocol} the WebSocket member that speaks JSON.
"""

from .protocol import WebChatFactory, WebChatProtocol

__all__ = ["WebChatFactory", "WebChatProtocol"]
