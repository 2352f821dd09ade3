"""
Deprecated: sockproto.chat.wire is now
sockproto.chat.backends.redis.wire.
This module re-exports their names for one release, with a
DeprecationWarning.
"""

import warnings

from .backends.redis.wire import *  # noqa: F403
from .backends.redis.wire import __all__ as _backends_redis_wire_all

__all__ = list(_backends_redis_wire_all)

warnings.warn(
    "sockproto.chat.wire is deprecated: import from sockproto.chat.backends.redis.wire",
    DeprecationWarning,
    stacklevel=2,
)
