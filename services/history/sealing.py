"""Events become stored bytes here: a customer's personal data sealed with the customer's key.

The library's cipher encrypts every event with one key; erasing one person needs one key per
person (crypto-shredding).  ``SealingMapper`` splits each event of a customer's streams (the
``Customer`` aggregate and the customer's desk) into

- a **clear** part: what the audit trail and the views' skeleton need and that names no one
  (the event's time, its kind, channel and direction, ids, who on our side did it); per event
  class an allow-list, so a field added later is sealed unless someone decides otherwise;
- a **sealed** part: everything else (addresses, names, bodies, subjects, notes, file names,
  provider references, reasons, snapshots' state), encrypted with AES-256-GCM under the
  customer's key (``services/history/keys.py``), bound to the event's stream, version and
  topic as associated data (a sealed part moved to another event does not open).

Stored format (the first byte says which; the hash chain covers these bytes):

- ``{`` …: version 1, the library's JSON — events stored before this change, and events of
  other aggregates (users, the conversation index, stored files).  Still read as they are.
- ``0x02``: version 2 — ``0x02``, the owner customer's id (16 bytes), the clear part's length
  (4 bytes, big-endian), the clear JSON, a 12-byte nonce, the sealed JSON encrypted.

An event whose key was deleted (the customer was erased) loads as an ``ErasedEvent``: its
clear part, nothing else.  Views ignore it; the customer itself no longer loads.
"""

from __future__ import annotations

import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, cast
from uuid import UUID, SafeUUID

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import (
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    Transcoder,
)
from eventsourcing.utils import get_topic, resolve_topic

from contracts.errors import ConfigError, NotFound
from services.domain import Customer
from services.domain.desk import CustomerDesk
from services.history.keys import Keyring

SEALED = 2
_HEADER = struct.Struct(">B16sI")
_NONCE = 12
_VERSION = struct.Struct(">Q")
# An enum member read off its class costs half a microsecond (3.11): read once.
_SAFE_UNKNOWN = SafeUUID.unknown
# Keys a process keeps (a key and its cipher: ~200 bytes).
KEY_CACHE_SIZE = 100_000

_CUSTOMER = "switchboard:Customer."
_DESK = "switchboard:CustomerDesk."

# Per event class, the fields stored in clear (besides these, which every event has).
_ALWAYS = frozenset({"timestamp", "originator_topic", "class_version", "topic"})
_ALL = frozenset({"*"})
CLEAR: dict[str, frozenset[str]] = {
    Customer.FirstContacted.TOPIC: frozenset({"channel"}),
    Customer.InteractionRecorded.TOPIC: frozenset(
        {"interaction_type", "channel", "direction", "occurred_at"}
    ),
    Customer.ConsentChanged.TOPIC: frozenset({"channel", "purpose", "granted"}),
    Customer.MergedInto.TOPIC: frozenset({"survivor_id", "by"}),
    Customer.Absorbed.TOPIC: frozenset({"absorbed_id", "by", "contact_count"}),
    Customer.Unmerged.TOPIC: frozenset({"absorbed_id", "by"}),
    Customer.Restored.TOPIC: frozenset({"survivor_id", "by"}),
    Customer.ProfileChanged.TOPIC: frozenset({"by"}),
    Customer.DuplicateDismissed.TOPIC: frozenset({"other_id", "by"}),
    Customer.Erased.TOPIC: _ALL,  # the erasure itself is the audit trail: who, when, why
    CustomerDesk.Started.TOPIC: frozenset({"customer_id"}),
    CustomerDesk.ConversationOpened.TOPIC: frozenset(
        {"customer_id", "conversation_id", "kind", "channel", "opened_at"}
    ),
    CustomerDesk.ContactJoined.TOPIC: frozenset(
        {"conversation_id", "notification_id", "direction", "occurred_at"}
    ),
    CustomerDesk.AssignmentAwaited.TOPIC: frozenset({"agent", "by"}),
    CustomerDesk.ConversationStatusChanged.TOPIC: frozenset(
        {"customer_id", "conversation_id", "channel", "from_status", "to_status", "assignee", "by"}
    ),
    CustomerDesk.NoteAdded.TOPIC: frozenset({"customer_id", "note_id", "conversation_id", "by"}),
    CustomerDesk.FileAttached.TOPIC: frozenset(
        {"customer_id", "content_type", "conversation_id", "by"}
    ),
}


class CustomerErased(NotFound):
    """The customer was erased: its events hold nothing readable any more."""

    def __init__(self, customer_id: UUID) -> None:
        super().__init__(f"customer {customer_id} was erased")
        self.customer_id = customer_id


class MissingKey(ConfigError):
    """A customer's events are sealed but the keyring has no key for them and no erasure:
    the keyring is not the one these events were written with (restore it: ``store restore
    --keys``).  Never taken for an erasure."""

    def __init__(self, owner: UUID, keyring: Any) -> None:
        where = getattr(keyring, "path", None) or type(keyring).__name__
        super().__init__(
            f"no key for customer {owner} in the keyring ({where}) and no erasure of them: "
            "this is not the keyring their events were sealed with (switchboard store restore "
            "--keys FILE puts a key backup back)"
        )
        self.owner = owner


class ErasedEvent:
    """What is left of an event whose customer was erased: its clear part."""

    def __init__(self, topic: str, owner: UUID, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.topic_of_event = topic
        self.owner_id = owner

    def mutate(self, aggregate: Any) -> Any:
        raise CustomerErased(self.owner_id)

    def __repr__(self) -> str:
        where = f"{self.__dict__.get('originator_id')} v{self.__dict__.get('originator_version')}"
        return f"ErasedEvent({self.topic_of_event}, {where})"


_POSITION = frozenset({"originator_id", "originator_version"})
_UNKNOWN = object()
_KINDS: dict[type, tuple[str, str | None, frozenset[str], int]] = {}


def _kind_of(cls: type) -> tuple[str, str | None, frozenset[str], int]:
    """(topic, whose streams: "customer", "desk" or None, the fields kept in clear, class
    version) of an event class, worked out once."""
    found = _KINDS.get(cls)
    if found is None:
        topic = get_topic(cls)
        kind = (
            "customer"
            if topic.startswith(_CUSTOMER)
            else "desk"
            if topic.startswith(_DESK)
            else None
        )
        clear = CLEAR.get(topic, frozenset())
        found = (
            topic,
            kind,
            clear if clear is _ALL else frozenset(clear | _ALWAYS),
            getattr(cls, "class_version", 1),
        )
        _KINDS[cls] = found
    return found


def owner_in(state: bytes) -> UUID | None:
    """The customer whose key seals these stored bytes (None: not sealed)."""
    if state[:1] != _SEALED_MARK:
        return None
    return UUID(bytes=state[1:17])


class SealingMapper(Mapper[UUID]):
    def __init__(self, transcoder: Transcoder, keyring: Keyring) -> None:
        super().__init__(transcoder)
        self.keyring = keyring
        self.recorder: Any = None  # set by the application: finds a desk stream's customer
        # The customers' ciphers (None: erased), oldest first, by the owner's 16 bytes as a
        # stored event's header names them: reading makes, hashes and compares no UUID (each
        # of those is Python code; they were half of fetching a page's keys).
        self._ciphers: OrderedDict[bytes, AESGCM | None] = OrderedDict()
        self._desk_owners: dict[UUID, UUID] = {}
        self._lock = threading.Lock()

    # -- keys --------------------------------------------------------------------------------

    def prepare(self, owners: Iterable[UUID], *, create: bool = False) -> None:
        """Fetch (with ``create``: make) the keys of these customers in one query.  A
        customer without a key is remembered as erased only if the keyring says it erased
        them; otherwise nothing is remembered (``_cipher`` raises ``MissingKey``)."""
        self._fetch([o.bytes for o in owners], create=create)

    def prepare_events(self, events: Iterable[Any]) -> None:
        """Make the keys of the customers these new domain events belong to."""
        self.prepare((o for o in (self._owner_of(e) for e in events) if o is not None), create=True)

    def prepare_stored(self, stored: Iterable[Any]) -> None:
        """Fetch the keys of the customers these stored events (or notifications) are
        sealed for: one query for a batch a follower is about to decode."""
        # The owners' raw ids, once each (a batch has each customer's events side by side).
        mark = _SEALED_MARK
        self._fetch([s.state[1:17] for s in stored if s.state[:1] == mark], create=False)

    def _fetch(self, owners: list[bytes], *, create: bool) -> None:
        with self._lock:
            held = self._ciphers
            wanted = [o for o in dict.fromkeys(owners) if o not in held]
        if not wanted:
            return
        if create:
            found = {
                o.bytes: key
                for o, key in self.keyring.keys_for(
                    [_uuid_of_bytes(o) for o in wanted], create=True
                ).items()
            }
        else:
            found = self.keyring.keys_by_bytes(wanted)
        missing = [o for o in wanted if o not in found]
        erased = (
            {e.bytes for e in self.keyring.erasures([_uuid_of_bytes(o) for o in missing])}
            if missing
            else set()
        )
        with self._lock:
            ciphers = self._ciphers
            for owner in wanted:
                key = found.get(owner)
                if key is not None:
                    ciphers[owner] = AESGCM(key)
                elif owner in erased:
                    ciphers[owner] = None
            while len(ciphers) > KEY_CACHE_SIZE:
                ciphers.popitem(last=False)

    def forget(self, owners: Iterable[UUID]) -> None:
        """Drop keys this process holds (after an erasure)."""
        with self._lock:
            for owner in owners:
                self._ciphers.pop(owner.bytes, None)

    def _cipher(self, owner: UUID, *, create: bool) -> AESGCM | None:
        """The customer's cipher; None if they were erased; ``MissingKey`` if the keyring
        has neither their key nor their erasure."""
        # The hot path takes no lock: a dict read is atomic, and the cache evicts the oldest
        # entries first (a customer still in use is fetched again, one query).
        raw = owner.bytes
        cipher = self._ciphers.get(raw, _UNKNOWN)
        if cipher is not _UNKNOWN:
            return cipher  # type: ignore[return-value]
        self._fetch([raw], create=create)
        with self._lock:
            if raw in self._ciphers:
                return self._ciphers[raw]
        raise MissingKey(owner, self.keyring)

    # -- whose events ------------------------------------------------------------------------

    def _owner_of(self, domain_event: Any) -> UUID | None:
        kind = _kind_of(type(domain_event))[1]
        if kind == "customer":
            return cast(UUID, domain_event.originator_id)
        if kind == "desk":
            owner = getattr(domain_event, "customer_id", None)
            stream = domain_event.originator_id
            if owner is not None:
                self._desk_owners[stream] = owner
                return cast(UUID, owner)
            return self._desk_owner(stream)
        return None

    def _desk_owner(self, stream: UUID) -> UUID:
        owner = self._desk_owners.get(stream)
        if owner is None:
            first = self.recorder.select_events(stream, lte=1)
            if not first:
                raise LookupError(f"desk {stream} has no first event to say whose it is")
            owner = owner_in(first[0].state)
            if owner is None:  # stored before sealing: the library's JSON
                owner = UUID(str(self.transcoder.decode(first[0].state)["customer_id"]))
            self._desk_owners[stream] = owner
        return owner

    # -- writing and reading -----------------------------------------------------------------

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        cls = type(domain_event)
        topic, kind, clear_fields, class_version = _kind_of(cls)
        if kind is None or clear_fields is _ALL:
            return super().to_stored_event(domain_event)
        owner = self._owner_of(domain_event)
        assert owner is not None
        clear: dict[str, Any] = {}
        sealed: dict[str, Any] = {}
        for name, value in domain_event.__dict__.items():
            if name in clear_fields:
                clear[name] = value
            elif name not in _POSITION:
                sealed[name] = value
        originator_id = domain_event.originator_id
        version = domain_event.originator_version
        if class_version > 1:
            clear["class_version"] = class_version
        cipher = self._cipher(owner, create=True)
        if cipher is None:
            raise CustomerErased(owner)
        encode = self.transcoder.encode
        clear_bytes = encode(clear)
        nonce = os.urandom(_NONCE)
        owner_bytes = owner.bytes
        oid_bytes = owner_bytes if originator_id == owner else _id_bytes(originator_id)
        body = cipher.encrypt(nonce, encode(sealed), _aad(owner_bytes, oid_bytes, version, topic))
        return StoredEvent(
            originator_id=originator_id,
            originator_version=version,
            topic=topic,
            state=b"".join(
                (_HEADER.pack(SEALED, owner_bytes, len(clear_bytes)), clear_bytes, nonce, body)
            ),
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        data = stored_event.state
        if data[:1] != _SEALED_MARK:
            return super().to_domain_event(stored_event)
        topic = stored_event.topic
        version = stored_event.originator_version
        try:
            # Every read of the log comes here (the followers, a rebuild): the ids made
            # without UUID()'s checks, the associated data from the header's own bytes and
            # the topic's class and bytes worked out once per topic (measured: ~5 of the
            # ~18 µs an interaction took to open).
            _, owner_bytes, clear_len = _HEADER.unpack_from(data)
            start = _HEADER.size
            end = start + clear_len
            decode = self.transcoder.decode
            state: dict[str, Any] = decode(data[start:end])
            originator_id = stored_event.originator_id
            if not isinstance(originator_id, UUID):
                originator_id = UUID(str(originator_id))
            cipher = self._ciphers.get(owner_bytes, _UNKNOWN)
            if cipher is _UNKNOWN:
                cipher = self._cipher(_uuid_of_bytes(owner_bytes), create=False)
            if cipher is None:
                owner = _uuid_of_bytes(owner_bytes)
                state["originator_id"] = originator_id
                state["originator_version"] = version
                return ErasedEvent(topic, owner, state)
            aad = _aad(owner_bytes, originator_id.int.to_bytes(16, "big"), version, topic)
            state.update(
                decode(cipher.decrypt(data[end : end + _NONCE], data[end + _NONCE :], aad))
            )
        except MissingKey:
            raise
        except Exception as e:
            raise MapperDeserialisationError(
                f"Failed to open sealed event {stored_event.originator_id} "
                f"v{stored_event.originator_version} ({stored_event.topic}): {e!r}"
            ) from e
        cls, class_version, is_desk = _read_kind(topic)
        state["originator_id"] = originator_id
        state["originator_version"] = version
        from_version = state.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
            from_version += 1
        if is_desk:
            self._desk_owners[originator_id] = _uuid_of_bytes(owner_bytes)
        domain_event = object.__new__(cls)
        object.__setattr__(domain_event, "__dict__", state)
        return domain_event


def _id_bytes(originator_id: Any) -> bytes:
    return (originator_id if isinstance(originator_id, UUID) else UUID(str(originator_id))).bytes


_TOPIC_BYTES: dict[str, bytes] = {}


def _topic_bytes(topic: str) -> bytes:
    found = _TOPIC_BYTES.get(topic)
    if found is None:
        found = _TOPIC_BYTES[topic] = topic.encode()
    return found


_SEALED_MARK = bytes([SEALED])
_READ_KINDS: dict[str, tuple[type, int, bool]] = {}


def _read_kind(topic: str) -> tuple[type, int, bool]:
    """(class, class version, whether a desk's) of a stored topic, worked out once."""
    found = _READ_KINDS.get(topic)
    if found is None:
        cls = resolve_topic(topic)
        found = (cls, getattr(cls, "class_version", 1), topic.startswith(_DESK))
        _READ_KINDS[topic] = found
    return found


def _uuid_of_bytes(raw: bytes) -> UUID:
    """``UUID(bytes=raw)`` without its checks and keyword handling (~5 times faster): the
    same object, equal and hashing alike."""
    if len(raw) != 16:
        raise ValueError("bytes is not a 16-char string")
    uuid = object.__new__(UUID)
    object.__setattr__(uuid, "int", int.from_bytes(raw, "big"))
    object.__setattr__(uuid, "is_safe", _SAFE_UNKNOWN)
    return uuid


def _aad(owner: bytes, originator: bytes, version: int, topic: str) -> bytes:
    """What a sealed part is bound to: its owner, its stream, its version and its topic."""
    return b"".join((owner, originator, _VERSION.pack(version), _topic_bytes(topic)))
