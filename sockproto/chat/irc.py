"""
Deprecated: sockproto.chat.irc is now
sockproto.chat.frontends.irc.protocol.
This module re-exports their names for one release, with a
DeprecationWarning.
"""

import warnings

from .frontends.irc.protocol import *  # noqa: F403
from .frontends.irc.protocol import __all__ as _frontends_irc_protocol_all

__all__ = list(_frontends_irc_protocol_all)

warnings.warn(
    "sockproto.chat.irc is deprecated:"
    " import from sockproto.chat.frontends.irc.protocol",
    DeprecationWarning,
    stacklevel=2,
)
