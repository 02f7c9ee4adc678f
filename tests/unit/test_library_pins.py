"""Where we lean on the eventsourcing library's internals, a test fails loudly when they change.

``CustomerHistory._save_customers`` is ``Application.save`` without its per-object protocol
checks (which cost more than the rest of a big batch): it calls the library's private
``_record``, ``_take_snapshots`` and ``_notify`` in the same order, with a ``ProcessingEvent``
filled the way ``collect_events`` fills it.  If a new library version changes any of that,
these tests say what to re-check instead of letting recording go subtly wrong.

``services/history/sql.py``'s recorders override the library's private ``_insert_events`` (to
write provider refs, identities, skips and several Kafka offsets in the events' transaction)
and call its private ``_insert_tracking`` once per partition.  That works only while the
public ``insert_events`` calls ``_insert_events`` inside its transaction with the caller's
keyword arguments, and (PostgreSQL) while the DB-function insert path, which skips
``_insert_events``, stays off.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.postgres import PostgresProcessRecorder
from eventsourcing.sqlite import SQLiteProcessRecorder

from services.bootstrap.settings import Settings
from services.history.customers import CustomerHistory
from services.history.sql import PostgresHistoryRecorder, SQLiteHistoryRecorder

SAVE_STEPS = ["collect_events", "_record", "_take_snapshots", "_notify"]


def test_application_save_still_takes_the_steps_our_batched_save_copies() -> None:
    source = inspect.getsource(Application.save)
    calls = [m for m in re.findall(r"\.(\w+)\(", source) if m in SAVE_STEPS]
    assert calls == SAVE_STEPS, (
        "eventsourcing's Application.save changed: re-check CustomerHistory._save_customers, "
        f"which copies its steps {SAVE_STEPS}; save now calls {calls}"
    )
    ours = inspect.getsource(CustomerHistory._save_customers)
    assert [m for m in re.findall(r"\.(\w+)\(", ours) if m in SAVE_STEPS[1:]] == SAVE_STEPS[1:]


def test_the_private_methods_and_fields_we_use_keep_their_shape() -> None:
    assert list(inspect.signature(Application._record).parameters) == ["self", "processing_event"]
    assert list(inspect.signature(Application._notify).parameters) == ["self", "recordings"]
    assert list(inspect.signature(Application._take_snapshots).parameters) == [
        "self",
        "processing_event",
    ]
    processing_event: ProcessingEvent = ProcessingEvent()
    for field in ("events", "aggregates", "saved_kwargs", "tracking"):
        assert hasattr(processing_event, field), f"ProcessingEvent lost {field}"
    record_source = inspect.getsource(Application._record)
    assert "processing_event.saved_kwargs" in record_source, (
        "Application._record no longer passes saved_kwargs to the recorder: our Kafka offsets "
        "and provider refs would not be stored with the events"
    )


def _shape(method: Callable[..., object]) -> list[tuple[str, object]]:
    """A method's parameters: their names and kinds (``**kwargs`` must stay ``**kwargs``)."""
    return [(p.name, p.kind) for p in inspect.signature(method).parameters.values()]


def test_the_recorders_private_insert_methods_keep_the_shape_our_overrides_assume() -> None:
    for ours, theirs, cursor in (
        (SQLiteHistoryRecorder, SQLiteProcessRecorder, "c"),
        (PostgresHistoryRecorder, PostgresProcessRecorder, "curs"),
    ):
        assert "_insert_events" in vars(ours), f"{ours.__name__} no longer overrides it"
        library = _shape(theirs._insert_events)
        assert library == [
            ("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
            (cursor, inspect.Parameter.POSITIONAL_OR_KEYWORD),
            ("stored_events", inspect.Parameter.POSITIONAL_OR_KEYWORD),
            ("kwargs", inspect.Parameter.VAR_KEYWORD),
        ], (
            f"eventsourcing's {theirs.__name__}._insert_events changed to {library}: re-check "
            f"{ours.__name__}._insert_events in services/history/sql.py"
        )
        assert _shape(ours._insert_events) == library
        tracking = list(inspect.signature(theirs._insert_tracking).parameters)
        assert tracking == ["self", cursor, "tracking"], (
            f"eventsourcing's {theirs.__name__}._insert_tracking changed to {tracking}: "
            f"{ours.__name__} writes one tracking row per Kafka partition with it"
        )


def test_the_public_insert_still_calls_our_override_in_its_transaction() -> None:
    sqlite = inspect.getsource(SQLiteHistoryRecorder.insert_events)
    assert re.search(
        r"with self\.datastore\.transaction\(commit=True\) as c:\s+"
        r"return self\._insert_events\(c, stored_events, \*\*kwargs\)",
        sqlite,
    ), (
        "eventsourcing's SQLite insert_events no longer calls _insert_events(**kwargs) in its "
        "transaction: offsets, provider refs and identities would not commit with the events"
    )
    postgres = inspect.getsource(PostgresHistoryRecorder.insert_events)
    transaction = postgres.find("conn.transaction()")
    call = postgres.find("self._insert_events(curs, stored_events, **kwargs)")
    assert -1 < transaction < call, (
        "eventsourcing's PostgreSQL insert_events no longer calls _insert_events(**kwargs) in "
        "its transaction: offsets, provider refs and identities would not commit with the events"
    )
    # Its DB-function path returns before that call: our settings must keep it off.
    assert "enable_db_functions" in postgres
    env = Settings(store="postgresql://u@127.0.0.1/db").event_store_env()
    assert env["POSTGRES_ENABLE_DB_FUNCTIONS"] == "n"


def test_the_postgres_event_insert_we_replace_still_locks_notifies_and_inserts() -> None:
    # PostgresHistoryRecorder._insert_stored_events sends one array per column instead of the
    # library's array of a composite type; it repeats the library's lock and NOTIFY, and the
    # library must still read the notification ids from the insert's RETURNING rows.
    from eventsourcing.postgres import PostgresApplicationRecorder

    theirs = inspect.getsource(PostgresApplicationRecorder._insert_stored_events)
    steps = re.findall(r"\.(_lock_table|_notify_channel|_insert_stored_events)\(", theirs)
    assert steps == ["_lock_table", "_notify_channel", "_insert_stored_events"], (
        "eventsourcing's PostgresApplicationRecorder._insert_stored_events changed: re-check "
        f"PostgresHistoryRecorder._insert_stored_events (it now calls {steps})"
    )
    insert = inspect.getsource(PostgresApplicationRecorder.insert_events)
    assert insert.find("self._insert_stored_events(") < insert.find(
        "self._fetch_ids_after_insert_events("
    )
    assert "_insert_stored_events" in vars(PostgresHistoryRecorder)
