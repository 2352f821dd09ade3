"""
Deprecated: sockproto.chat.shared is now
sockproto.chat.backends.redis (the server in C{server}, the room in
C{room}, the Redis side in C{store}).
This module re-exports their names for one release, with a
DeprecationWarning.
"""

import warnings

from .backends.redis.room import SharedRoom
from .backends.redis.server import BrokerService, RedisChatServer

__all__ = ["BrokerService", "RedisChatServer", "SharedRoom"]

warnings.warn(
    "sockproto.chat.shared is deprecated:"
    " import from sockproto.chat.backends.redis.server",
    DeprecationWarning,
    stacklevel=2,
)
