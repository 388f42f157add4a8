"""How the SQLite store turns a batch's net change into few statements.

Everything here is about cost, measured on the writer thread (callgrind,
and `midge bench --scenario persistent-qos1`): SQLite and the sqlite3 module
pay per statement far more than per row, and each statement the writer
runs releases and retakes the GIL while the event loop competes for it. So
rows go in multi-row statements (`MultiRow`), an outbound row's columns are
grouped by what it holds (`OutboundWrites`), and every bound value is of a
type the sqlite3 module passes through without "adapting" it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, TypeVar

from midge.message import Message

# The sqlite3 module "adapts" each bound value that is not an exact int, float,
# str or bytearray (None, bytes, bool, IntEnum), at about a microsecond each (a
# failed attribute lookup raises and clears an AttributeError). So rows are
# built of exact types: a queued row's packet id and awaiting are 0 (no packet
# id is 0), and a column that would be None is left out instead.
_ADD_INLINE = (
    "INSERT OR REPLACE INTO outbound"
    " (client_id, seq, packet_id, awaiting, topic, payload, qos, retain)",
    8,
)
_ADD_SHARED = (
    "INSERT OR REPLACE INTO outbound (client_id, seq, packet_id, awaiting, message_id)",
    5,
)
_COPY_BELOW = 8192  # payload bytes: copying to a bytearray is cheaper than adapting
_MOST_ROWS = 256  # per statement
# Up to this many rows a statement has exactly as many as it writes (one
# statement, so one GIL hand-off); beyond it, chunks of a power of two. Either
# way few distinct texts, which the sqlite3 module's statement cache keeps
# prepared (see CACHED_STATEMENTS).
_EXACT_ROWS = 64
CACHED_STATEMENTS = 256
Row = tuple[Any, ...]
_T = TypeVar("_T")


class MultiRow:
    """Statements that write many rows in one step, in power-of-two chunks so
    the sqlite3 module's statement cache holds every text that is used."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._variables = db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._texts: dict[tuple[str, int, int], str] = {}
        self._queued: list[tuple[str, Sequence[Any]]] = []

    def values(self, head: str, width: int, params: list[Any], tail: str = "") -> None:
        """`head VALUES (?, ...), ... tail` for the rows of `width` values in the flat
        `params`."""
        rows = len(params) // width
        most = self._most(width, 0)
        exact = min(most, _EXACT_ROWS)
        start = 0
        while start < rows:
            left = rows - start
            count = left if left <= exact else 1 << (min(left, most).bit_length() - 1)
            text = self._text(head, width, count, tail)
            self.execute(text, params[start * width : (start + count) * width])
            start += count

    def execute(self, text: str, params: Sequence[Any]) -> None:
        """Queue one statement for `commit`."""
        self._queued.append((text, params))

    def commit(self) -> None:
        """Run the queued statements as one transaction. BEGIN and COMMIT are two
        more statements, each a GIL hand-off: a batch that nets out to nothing
        runs none, and one statement alone is its own transaction."""
        queued, self._queued = self._queued, []
        db = self._db
        if len(queued) == 1:
            db.execute(*queued[0])
        elif queued:
            db.execute("BEGIN")
            for text, params in queued:
                db.execute(text, params)
            db.execute("COMMIT")

    def discard(self) -> None:
        """Forget what a failed apply queued."""
        self._queued = []

    def within(self, head: str, prefix: Row, keys: list[Any]) -> None:
        """`head (?, ...)` with the `prefix` parameters first: an IN list of `keys`,
        padded to a power of two by repeating the last (which changes nothing), so
        one statement takes them all."""
        most = self._most(1, len(prefix))
        for start in range(0, len(keys), most):
            chunk = padded(keys[start : start + most])
            self.execute(self._text(head, 1, len(chunk), None), (*prefix, *chunk))

    def sent(self, client_id: str, rows: list[tuple[int, int, int]]) -> None:
        """Set (seq, packet id, awaiting) on a client's outbound rows: one UPDATE
        for all (a CASE per column), padded like `within`. Row by row, each
        statement would release and retake the GIL."""
        most = self._most(5, 1)
        for start in range(0, len(rows), most):
            chunk = padded(rows[start : start + most])
            key = ("UPDATE outbound", 5, len(chunk))
            text = self._texts.get(key)
            if text is None:
                cases = " ".join(["WHEN ? THEN ?"] * len(chunk))
                text = self._texts[key] = (
                    f"UPDATE outbound SET packet_id = CASE seq {cases} END, awaiting = CASE seq"
                    f" {cases} END WHERE client_id = ? AND seq IN ({', '.join('?' * len(chunk))})"
                )
            params: list[Any] = []
            for seq, packet_id, _ in chunk:
                params += (seq, packet_id)
            for seq, _, awaiting in chunk:
                params += (seq, awaiting)
            params.append(client_id)
            params += [seq for seq, _, _ in chunk]
            self.execute(text, params)

    def _most(self, width: int, fixed: int) -> int:
        """Rows per statement at most: a power of two, within SQLite's variable limit."""
        rows = min(_MOST_ROWS, (self._variables - fixed) // width)
        return 1 << (rows.bit_length() - 1)

    def _text(self, head: str, width: int, count: int, tail: str | None) -> str:
        """The statement; `tail` None: an IN list rather than VALUES rows."""
        key = (head, width, count)
        text = self._texts.get(key)
        if text is None:
            one = "?" if width == 1 else "(" + ", ".join("?" * width) + ")"
            listed = ", ".join([one] * count)
            text = f"{head} ({listed})" if tail is None else f"{head} VALUES {listed}{tail}"
            self._texts[key] = text
        return text


def padded(items: list[_T]) -> list[_T]:
    """To the next power of two, repeating the last item."""
    return items + [items[-1]] * ((1 << (len(items) - 1).bit_length()) - len(items))


def by_client(keys: list[tuple[str, Any]]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {}
    for client_id, key in keys:
        grouped.setdefault(client_id, []).append(key)
    return grouped


class OutboundWrites:
    """One segment's outbound rows, gathered into as few statements as possible."""

    __slots__ = ("gone", "inline", "messages", "shared", "updated")

    def __init__(self) -> None:
        self.gone: dict[str, list[int]] = {}  # client id -> seqs
        self.inline: list[Any] = []  # rows with their message, flat (_ADD_INLINE)
        self.shared: list[Any] = []  # rows referring to a shared message, flat
        self.messages: list[Any] = []  # new shared messages, flat
        # client id -> (seq, packet id, awaiting) of rows that went in flight
        self.updated: dict[str, list[tuple[int, int, int]]] = {}

    def delete(self, client_id: str, seq: int) -> None:
        seqs = self.gone.get(client_id)
        if seqs is None:
            self.gone[client_id] = [seq]
        else:
            seqs.append(seq)

    def update(self, client_id: str, seq: int, packet_id: int, awaiting: int) -> None:
        rows = self.updated.get(client_id)
        if rows is None:
            self.updated[client_id] = [(seq, packet_id, awaiting)]
        else:
            rows.append((seq, packet_id, awaiting))

    def add(
        self,
        client_id: str,
        seq: int,
        packet_id: int | None,
        awaiting: int | None,
        message: Message,
        message_id: int | None,
    ) -> None:
        row = self.inline if message_id is None else self.shared
        row += (client_id, seq, packet_id or 0, 0 if awaiting is None else int(awaiting))
        if message_id is None:
            row += (message.topic, blob(message.payload), message.qos)
            row.append(1 if message.retain else 0)
        else:
            row.append(message_id)

    def run(self, write: MultiRow) -> None:
        for client_id, seqs in self.gone.items():
            write.within("DELETE FROM outbound WHERE client_id = ? AND seq IN", (client_id,), seqs)
        if self.messages:
            write.values("INSERT INTO messages", 5, self.messages)
        if self.inline:
            write.values(*_ADD_INLINE, self.inline)
        if self.shared:
            write.values(*_ADD_SHARED, self.shared)
        for client_id, rows in self.updated.items():
            write.sent(client_id, rows)


def message_columns(message: Message | None) -> Row:
    if message is None:
        return (None, None, None, None)
    return (message.topic, blob(message.payload), message.qos, 1 if message.retain else 0)


def blob(payload: bytes) -> bytes | bytearray:
    """The payload as the sqlite3 module binds it without adapting (see _ADD_OUTBOUND)."""
    return bytearray(payload) if len(payload) < _COPY_BELOW else payload
