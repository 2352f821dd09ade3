"""
Deprecated: sockproto.chat.rooms is now
sockproto.chat.backends.memory and sockproto.chat.names.
This module re-exports their names for one release, with a
DeprecationWarning.
"""

import warnings

from .backends.memory import *  # noqa: F403
from .backends.memory import __all__ as _backends_memory_all
from .names import *  # noqa: F403
from .names import __all__ as _names_all

__all__ = list(_backends_memory_all) + list(_names_all)

warnings.warn(
    "sockproto.chat.rooms is deprecated:"
    " import from sockproto.chat.backends.memory and sockproto.chat.names",
    DeprecationWarning,
    stacklevel=2,
)
