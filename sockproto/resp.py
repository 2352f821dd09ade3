"""
Deprecated: sockproto.resp is now
sockproto.chat.backends.redis.resp.
This module re-exports their names for one release, with a
DeprecationWarning.
"""

import warnings

from .chat.backends.redis.resp import *  # noqa: F403
from .chat.backends.redis.resp import __all__ as _chat_backends_redis_resp_all

__all__ = list(_chat_backends_redis_resp_all)

warnings.warn(
    "sockproto.resp is deprecated: import from sockproto.chat.backends.redis.resp",
    DeprecationWarning,
    stacklevel=2,
)
