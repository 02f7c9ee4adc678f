"""A sealed event opens to exactly what was sealed, and to what reading the stored format the
plain way (the library's JSON transcoder, ``UUID()``, one key lookup per event) gives: the
mapper's shortcuts change the cost of opening an event, never the event."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.application import Application
from eventsourcing.persistence import JSONTranscoder, StoredEvent
from eventsourcing.utils import resolve_topic
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.log_pages import _uuid
from services.domain import Customer
from services.domain.desk import CustomerDesk
from services.history.keys import Erasure, new_key
from services.history.sealing import (
    _HEADER,
    _NONCE,
    SEALED,
    ErasedEvent,
    SealingMapper,
    _uuid_of_bytes,
)
from services.history.transcoder import OrjsonTranscoder


class MemoryKeyring:
    """The keyring's reads, in memory."""

    def __init__(self) -> None:
        self.keys: dict[UUID, bytes] = {}
        self.erased: dict[UUID, Erasure] = {}

    def keys_for(self, customer_ids: Any, *, create: bool) -> dict[UUID, bytes]:
        found = {}
        for cid in customer_ids:
            if cid not in self.keys and create and cid not in self.erased:
                self.keys[cid] = new_key()
            if cid in self.keys:
                found[cid] = self.keys[cid]
        return found

    def keys_by_bytes(self, raw_ids: Any) -> dict[bytes, bytes]:
        return {
            c.bytes: k for c, k in self.keys_for(map(_uuid_of_bytes, raw_ids), create=False).items()
        }

    def erasures(self, customer_ids: Any = None) -> dict[UUID, Erasure]:
        return {c: self.erased[c] for c in customer_ids or self.erased if c in self.erased}

    def erase(self, cid: UUID) -> None:
        self.keys.pop(cid, None)
        self.erased[cid] = Erasure(cid, datetime.now(UTC), "admin", "test")


def _transcoder(cls: type) -> Any:
    transcoder = cls()
    Application.register_transcodings(None, transcoder)  # type: ignore[arg-type]
    return transcoder


LIBRARY_JSON = _transcoder(JSONTranscoder)


def read_plainly(stored: StoredEvent, keyring: MemoryKeyring) -> Any:
    """The stored format read step by step, as the module documents it."""
    data = stored.state
    assert data[0] == SEALED
    _, owner_bytes, clear_len = _HEADER.unpack_from(data)
    owner = UUID(bytes=owner_bytes)
    start = _HEADER.size
    state = LIBRARY_JSON.decode(data[start : start + clear_len])
    rest = data[start + clear_len :]
    originator_id = UUID(str(stored.originator_id))
    key = keyring.keys_for([owner], create=False).get(owner)
    if key is None:
        state["originator_id"] = originator_id
        state["originator_version"] = stored.originator_version
        return ErasedEvent(stored.topic, owner, state)
    # The associated data as the format says: owner, stream, version (8 bytes), topic.
    version = stored.originator_version.to_bytes(8, "big")
    aad = owner.bytes + originator_id.bytes + version + stored.topic.encode()
    state.update(LIBRARY_JSON.decode(AESGCM(key).decrypt(rest[:_NONCE], rest[_NONCE:], aad)))
    state["originator_id"] = originator_id
    state["originator_version"] = stored.originator_version
    state.pop("class_version", None)
    event = object.__new__(resolve_topic(stored.topic))
    object.__setattr__(event, "__dict__", state)
    return event


def _same(a: Any, b: Any) -> bool:
    """The same type and the same attributes, each of the same type."""
    if type(a) is not type(b) or vars(a).keys() != vars(b).keys():
        return False
    return all(type(vars(a)[k]) is type(vars(b)[k]) and vars(a)[k] == vars(b)[k] for k in vars(a))


texts = st.text(max_size=20)
times = st.datetimes(
    min_value=datetime(1, 1, 2), timezones=st.sampled_from([UTC, timezone(timedelta(hours=3))])
)
payloads = st.dictionaries(
    st.text(max_size=8),
    st.one_of(st.none(), st.booleans(), st.integers(-(2**60), 2**60), texts, st.uuids(), times),
    max_size=5,
)


@st.composite
def events(draw: Any) -> list[Any]:
    """A customer's first contact, a contact, and a conversation of their desk."""
    cid, desk = draw(st.uuids()), draw(st.uuids())
    at = draw(times)
    first = Customer.FirstContacted(
        originator_id=cid,
        originator_version=1,
        timestamp=at,
        originator_topic="switchboard:Customer",
        address=draw(texts),
        channel=draw(texts),
    )
    contact = Customer.InteractionRecorded(
        originator_id=cid,
        originator_version=draw(st.integers(2, 2**40)),
        timestamp=at,
        interaction_type=draw(texts),
        channel=draw(texts),
        direction=draw(texts),
        party=draw(texts),
        provider_ref=draw(texts),
        occurred_at=draw(times),
        payload=draw(payloads),
    )
    opened = CustomerDesk.ConversationOpened(
        originator_id=desk,
        originator_version=2,
        timestamp=at,
        customer_id=cid,
        conversation_id=draw(st.uuids()),
        kind=draw(texts),
        channel=draw(texts),
        party=draw(texts),
        opened_at=draw(times),
    )
    return [first, contact, opened]


@settings(max_examples=150, deadline=None)
@given(events(), st.booleans())
def test_a_sealed_event_opens_to_what_was_sealed_and_to_what_the_plain_reading_gives(
    sealed: list[Any], erased: bool
) -> None:
    keyring = MemoryKeyring()
    writer = SealingMapper(_transcoder(OrjsonTranscoder), keyring)  # type: ignore[arg-type]
    stored = [writer.to_stored_event(e) for e in sealed]
    if erased:
        keyring.erase(sealed[0].originator_id)
    reader = SealingMapper(_transcoder(OrjsonTranscoder), keyring)  # type: ignore[arg-type]
    reader.prepare_stored(stored)
    for event, row in zip(sealed, stored, strict=True):
        opened = reader.to_domain_event(row)
        assert _same(opened, read_plainly(row, keyring))
        if not erased:
            assert _same(opened, event)
        # The store may hand the id over as text (a recorder of text ids): the same event.
        as_text = StoredEvent(str(row.originator_id), row.originator_version, row.topic, row.state)
        assert _same(reader.to_domain_event(as_text), opened)


@given(st.binary(min_size=16, max_size=16))
def test_an_id_made_from_its_bytes_is_the_uuid_the_library_makes(raw: bytes) -> None:
    made, library = _uuid_of_bytes(raw), UUID(bytes=raw)
    assert made == library and hash(made) == hash(library) and str(made) == str(library)
    assert made.is_safe == library.is_safe and pickle.loads(pickle.dumps(made)) == library
    assert {made: 1}[library] == 1


@given(st.uuids())
def test_an_id_read_from_its_stored_text_is_the_uuid_the_library_makes(wanted: UUID) -> None:
    seen: dict[str, UUID] = {}
    for text in (str(wanted), wanted.hex, "{" + str(wanted) + "}", str(wanted).upper()):
        made = _uuid(seen, text)
        assert made == UUID(text) and hash(made) == hash(wanted) and str(made) == str(wanted)
        assert type(made) is UUID and made.is_safe == UUID(text).is_safe
        assert seen[text] is made


def test_a_stored_id_that_is_not_one_fails_as_the_library_fails() -> None:
    for text in ("not-a-uuid-at-all-but-36-chars-long!", "12345678-1234-1234-1234-12345678901", ""):
        try:
            UUID(text)
        except ValueError:
            pass
        else:
            raise AssertionError(text)
        try:
            _uuid({}, text)
        except ValueError:
            continue
        raise AssertionError(f"{text!r} was read as an id")


def test_an_event_of_a_stream_sealed_for_another_customer_is_not_taken_for_theirs() -> None:
    keyring = MemoryKeyring()
    mapper = SealingMapper(_transcoder(OrjsonTranscoder), keyring)  # type: ignore[arg-type]
    cid = uuid4()
    first = Customer.FirstContacted(
        originator_id=cid,
        originator_version=1,
        timestamp=datetime.now(UTC),
        originator_topic="switchboard:Customer",
        address="+4930123",
        channel="voice",
    )
    row = mapper.to_stored_event(first)
    moved = StoredEvent(uuid4(), row.originator_version, row.topic, row.state)
    try:
        mapper.to_domain_event(moved)
    except Exception as e:  # the sealed part is bound to its stream
        assert "Failed to open sealed event" in str(e)
    else:
        raise AssertionError("a sealed part opened under another stream")
