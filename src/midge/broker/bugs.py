"""How a bug is logged: its traceback once per place, one line after that.

A bug a client can trigger at will (the same packet, again and again) must
not fill the log, yet the first occurrence needs its whole traceback.
"""

from __future__ import annotations

import logging

log = logging.getLogger("midge.broker")


class BugLog:
    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: set[tuple[type, str]] = set()  # (exception type, file:line)

    def report(self, exc: Exception, serving: str) -> None:
        frame = exc.__traceback__
        while frame is not None and frame.tb_next is not None:
            frame = frame.tb_next
        where = f"{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}" if frame else "?"
        key = (type(exc), where)
        if key in self._seen:
            log.error("internal error serving %s (again): %r at %s", serving, exc, where)
        else:
            self._seen.add(key)
            log.error("internal error serving %s", serving, exc_info=exc)
