"""Where we lean on the eventsourcing library's internals, a test fails loudly when they change.

``CustomerHistory._save_customers`` is ``Application.save`` without its per-object protocol
checks (which cost more than the rest of a big batch): it calls the library's private
``_record``, ``_take_snapshots`` and ``_notify`` in the same order, with a ``ProcessingEvent``
filled the way ``collect_events`` fills it.  If a new library version changes any of that,
these tests say what to re-check instead of letting recording go subtly wrong.
"""

from __future__ import annotations

import inspect
import re

from eventsourcing.application import Application, ProcessingEvent

from services.history.customers import CustomerHistory

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
