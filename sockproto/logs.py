# -*- test-case-name: tests.test_text -*-
"""
Logging for sockproto: a L{Logger} whose every text field is escaped, so
that nothing a peer sends (a nickname, a close reason, an origin) can put
a line break, or any other unprintable character, into the log.
"""

from typing import Any, Optional

from twisted.logger import Logger, LogLevel

from .text import escape_for_log

__all__ = ["SafeLogger"]


class SafeLogger(Logger):
    """
    A L{twisted.logger.Logger} that escapes every C{str} field of an event
    with L{escape_for_log} before it is emitted.  Format strings are the
    code's own; what comes from outside is always a field.
    """

    def emit(
        self, level: LogLevel, format: Optional[str] = None, **kwargs: Any
    ) -> None:
        for key, value in kwargs.items():
            if type(value) is str and not key.startswith("log_"):
                if not value.isprintable():
                    kwargs[key] = escape_for_log(value)
        super().emit(level, format, **kwargs)
