"""
Deprecated: sockproto.chat.shared is now
sockproto.chat.backends.redis.shared.
This module re-exports their names for one release, with a
DeprecationWarning.
"""

import warnings

from .backends.redis.shared import *  # noqa: F403
from .backends.redis.shared import __all__ as _backends_redis_shared_all

__all__ = list(_backends_redis_shared_all)

warnings.warn(
    "sockproto.chat.shared is deprecated:"
    " import from sockproto.chat.backends.redis.shared",
    DeprecationWarning,
    stacklevel=2,
)
