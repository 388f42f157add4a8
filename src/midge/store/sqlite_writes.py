"""How the SQLite store turns a batch's net change into few statements.

Everything here is about cost, measured on the writer thread (callgrind,
and `midge bench --scenario persistent-qos1`): SQLite and the sqlite3 module
pay per statement far more than per row, and each statement the writer
runs releases and retakes the GIL while the event loop competes for it. So
rows go in multi-row statements (`MultiRow`), an outbound row's columns are
grouped by what it holds (`OutboundWrites`), and every bound value is of a
type the sqlite3 module passes through without "adapting" it.

A 5.0 message's own columns (`properties`, `expires_at`) are bound only for
a message that has one of them (`Rows`): a 3.1.1 message's row leaves them
out, NULL, rather than bind two Nones that would each be adapted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, TypeVar

from midge.message import Message
from midge.protocol.errors import MalformedPacket
from midge.protocol.properties import PUBLISH, Properties, decode_properties, encode_properties

# The sqlite3 module "adapts" each bound value that is not an exact int, float,
# str or bytearray (None, bytes, bool, IntEnum), at about a microsecond each (a
# failed attribute lookup raises and clears an AttributeError). So rows are
# built of exact types: a queued row's packet id and awaiting are 0 (no packet
# id is 0), and a column that would be None is left out instead.
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


class Insert:
    """A multi-row INSERT into a table whose rows hold a message, in its two
    forms: without the 5.0 columns and with them."""

    __slots__ = ("extended", "plain", "tail", "width")

    def __init__(self, head: str, columns: str, tail: str = "") -> None:
        self.plain = f"{head} ({columns})"
        self.extended = f"{head} ({columns}, properties, expires_at)"
        self.width = columns.count(",") + 1  # of the plain form
        self.tail = tail


INSERT_OUTBOUND = Insert(
    "INSERT OR REPLACE INTO outbound",
    "client_id, seq, packet_id, awaiting, topic, payload, qos, retain",
)
INSERT_MESSAGES = Insert("INSERT INTO messages", "id, topic, payload, qos, retain")
INSERT_RELEASES = Insert(
    "INSERT OR REPLACE INTO pending_releases",
    "client_id, packet_id, topic, payload, qos, retain",
)
INSERT_RETAINED = Insert("INSERT OR REPLACE INTO retained", "topic, payload, qos")


class Rows:
    """New rows of one `Insert`, flat: those whose message has a 5.0 field
    apart, with the two columns more."""

    __slots__ = ("extended", "insert", "plain")

    def __init__(self, insert: Insert) -> None:
        self.insert = insert
        self.plain: list[Any] = []
        self.extended: list[Any] = []

    def add(self, values: Row, message: Message | None) -> None:
        """A row of `values` (the plain form's columns) holding `message`."""
        if message is None or (message.properties is None and message.expires_at is None):
            self.plain += values
        else:
            self.extended += values
            self.extended += (properties_column(message.properties), message.expires_at)

    def run(self, write: MultiRow) -> None:
        insert = self.insert
        if self.plain:
            write.values(insert.plain, insert.width, self.plain, insert.tail)
        if self.extended:
            write.values(insert.extended, insert.width + 2, self.extended, insert.tail)


class OutboundWrites:
    """One segment's outbound rows, gathered into as few statements as possible."""

    __slots__ = ("gone", "inline", "messages", "shared", "updated")

    def __init__(self) -> None:
        self.gone: dict[str, list[int]] = {}  # client id -> seqs
        self.inline = Rows(INSERT_OUTBOUND)  # rows with their message
        self.shared: list[Any] = []  # rows referring to a shared message, flat
        self.messages = Rows(INSERT_MESSAGES)  # new shared messages
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
        in_flight = 0 if awaiting is None else int(awaiting)
        if message_id is not None:
            self.shared += (client_id, seq, packet_id or 0, in_flight, message_id)
            return
        topic, payload, retain = message.topic, blob(message.payload), 1 if message.retain else 0
        row = (client_id, seq, packet_id or 0, in_flight, topic, payload, message.qos, retain)
        # Rows.add inlined for a 3.1.1 message: a method call per row is measurable.
        if message.properties is None and message.expires_at is None:
            self.inline.plain += row
        else:
            self.inline.add(row, message)

    def share(self, message_id: int, message: Message) -> None:
        """A new shared message, which rows added after it refer to."""
        self.messages.add((message_id, *message_columns(message)), message)

    def run(self, write: MultiRow) -> None:
        for client_id, seqs in self.gone.items():
            write.within("DELETE FROM outbound WHERE client_id = ? AND seq IN", (client_id,), seqs)
        self.messages.run(write)
        self.inline.run(write)
        if self.shared:
            write.values(*_ADD_SHARED, self.shared)
        for client_id, rows in self.updated.items():
            write.sent(client_id, rows)


def message_columns(message: Message | None) -> Row:
    if message is None:
        return (None, None, None, None)
    return (message.topic, blob(message.payload), message.qos, 1 if message.retain else 0)


def blob(payload: bytes) -> bytes | bytearray:
    """The payload as the sqlite3 module binds it without adapting (see _COPY_BELOW)."""
    return bytearray(payload) if len(payload) < _COPY_BELOW else payload


def properties_column(properties: Properties | None) -> bytearray | None:
    """A message's properties as stored: the property block a PUBLISH carries
    (its length first), which `properties_from_column` reads back."""
    return None if properties is None else bytearray(encode_properties(properties))


def properties_from_column(column: bytes | None) -> Properties | None:
    """None for NULL (and for an empty block). Raises the protocol's MQTTError if
    the column is not one property block of a PUBLISH."""
    if column is None:
        return None
    properties, end = decode_properties(column, 0, len(column), PUBLISH)
    if end != len(column):
        raise MalformedPacket(f"{len(column) - end} bytes after the property block")
    return properties
