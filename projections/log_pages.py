"""Pages of the notification log, read for a view.

The library's ``select_notifications`` makes, per row, a frozen ``Notification`` (a
``__setattr__`` per field), a ``UUID`` from the stored text (the library's parser) and reads a
``sqlite3.Row`` by name: on SQLite four fifths of a page's cost (profiled: 14-16 µs a row,
the select itself 3).  ``read_page`` asks SQLite for plain tuples and makes the same values
(``StoredRow``: the notification's fields, the id a ``UUID`` equal to the library's), each
customer's id once per page; other stores are read by the library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple
from uuid import UUID, SafeUUID

from eventsourcing.sqlite import SQLiteApplicationRecorder


class StoredRow(NamedTuple):
    """A notification as ``select_notifications`` gives it (the same fields and values)."""

    id: int
    originator_id: UUID
    originator_version: int
    topic: str
    state: bytes


def read_page(
    recorder: Any,
    *,
    start: int,
    limit: int,
    topics: Sequence[str],
    stop: int | None = None,
) -> Sequence[Any]:
    """The notifications after ``start`` (up to ``stop``, at most ``limit``) with these topics,
    in order: ``select_notifications(start, limit, stop, topics, inclusive_of_start=False)``."""
    if not (
        isinstance(recorder, SQLiteApplicationRecorder)
        and recorder.datastore.originator_id_type == "uuid"
        and topics
    ):
        return recorder.select_notifications(  # type: ignore[no-any-return]
            start=start, limit=limit, stop=stop, topics=topics, inclusive_of_start=False
        )
    marks = ",".join("?" * len(topics))
    upto = "" if stop is None else "AND rowid <= ? "
    statement = (
        "SELECT rowid, originator_id, originator_version, topic, state "
        f"FROM {recorder.events_table_name} WHERE rowid > ? {upto}AND topic IN ({marks}) "
        "ORDER BY rowid LIMIT ?"
    )
    params = (start, *(() if stop is None else (stop,)), *topics, limit)
    with recorder.datastore.transaction(commit=False) as c:
        cursor = c.sqlite_cursor
        cursor.row_factory = None  # tuples: this cursor is the transaction's own
        cursor.execute(statement, params)
        rows = cursor.fetchall()
    ids: dict[str, UUID] = {}
    new = tuple.__new__
    return [
        new(StoredRow, (r[0], ids.get(r[1]) or _uuid(ids, r[1]), r[2], r[3], r[4])) for r in rows
    ]


# An enum member read off its class costs half a microsecond (3.11): read once.
_SAFE_UNKNOWN = SafeUUID.unknown


def _uuid(seen: dict[str, UUID], text: str) -> UUID:
    """``UUID(text)`` of a stored id, made without the library parser's keyword handling.
    The library stores a UUID as its 32 hex digits (``.hex``); the canonical 36-character form
    is taken too, anything else goes to ``UUID`` itself (which raises as it would)."""
    digits = text.replace("-", "") if len(text) == 36 else text
    if len(digits) != 32:
        found = seen[text] = UUID(text)
        return found
    found = object.__new__(UUID)
    object.__setattr__(found, "int", int(digits, 16))  # UUID() parses with int(·, 16) too
    object.__setattr__(found, "is_safe", _SAFE_UNKNOWN)
    seen[text] = found
    return found
