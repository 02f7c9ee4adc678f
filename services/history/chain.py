"""The hash chain over the stored events: what makes a changed history detectable.

Every event the customer history stores gets a chain row, written in the transaction that
stores the event (``chain_sql.py``), over its *stored* bytes (so an encrypted or
crypto-shredded event stays verifiable without its key):

- ``stream_hash = sha256(previous stream_hash of the same originator || framed event)``, the
  previous being 32 zero bytes for a stream's first event.  The framed event is
  ``len(id) (4 bytes) || version (8, signed) || len(topic) (4) || id || topic || state``,
  integers big-endian, the id being a UUID's 32 lowercase hex digits in ASCII (a text id's
  UTF-8), the topic UTF-8;
- ``global_hash = sha256(previous global_hash || notification_id (8, signed) || stream_hash)``
  over the notification order, from 32 zero bytes.

So an event's bytes, its place in its stream and its place in the log are each bound to every
hash after it: a modified, deleted, inserted or reordered row shows where the recomputed
chain first differs from the stored one (``services/audit/verify.py``).  Whoever can write the
database can recompute the whole chain, though: signed checkpoints of the global head, kept
elsewhere, are what prove the history up to them unchanged (``services/audit/checkpoints.py``).

Every value is hashed as bytes the stores can hand back as they are (SQLite's ``CAST(… AS
BLOB)``), so the verifier reads a tampered row of any type without failing on it.
``FORMAT_VERSION`` names this definition; the store records the one it was written with.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from hashlib import sha256
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from contracts.errors import SwitchboardError

FORMAT_VERSION = 1
GENESIS = bytes(32)

_FRAME = struct.Struct(">IqI")
_POSITION = struct.Struct(">q")

# (notification_id, id key, version, topic (UTF-8), state): what is chained
ChainInput = tuple[int, bytes, int, bytes, bytes]
# (notification_id, id key, version, stream_hash, global_hash): a chain row
ChainRow = tuple[int, bytes, int, bytes, bytes]
# (notification_id, id key, version, topic, state, stream_hash, global_hash): an event and the
# hashes of its chain row (None: no row of its originator and version at its notification id)
LinkedEvent = tuple[int, bytes, int, bytes, bytes, bytes | None, bytes | None]


class ChainFormatError(SwitchboardError):
    """The store's chain was written by a release with another hash definition."""

    def __init__(self, found: int) -> None:
        super().__init__(
            f"the store's event chain has format {found}, this release writes format "
            f"{FORMAT_VERSION}: run the release that wrote it (or a newer one)"
        )
        self.found = found


@dataclass(frozen=True)
class ChainStart:
    """When the store's chain began, and the events stored before it (chained then)."""

    format_version: int
    began_at: datetime
    backfilled_events: int  # stored before the chain existed, chained when it began
    backfilled_through: int  # the last of them (0: none)


def id_key(originator_id: UUID | str) -> bytes:
    """The originator id as hashed: a UUID's 32 lowercase hex digits, a text id's UTF-8."""
    return originator_id.hex.encode() if isinstance(originator_id, UUID) else originator_id.encode()


def originator_of(key: bytes) -> UUID | str:
    """The originator an id key names, for people (a tampered key is shown as it is)."""
    try:
        text = key.decode()
        if len(text) == 32:
            return UUID(text)
    except ValueError:  # not UTF-8, or not a UUID's digits
        return repr(key)
    return text if text.isprintable() else repr(key)


def chain_input(
    notification_ids: Sequence[int], stored_events: Sequence[StoredEvent]
) -> list[ChainInput]:
    """What the writer chains of the events it has just inserted."""
    topics: dict[str, bytes] = {}
    found = []
    for nid, e in zip(notification_ids, stored_events, strict=True):
        topic = topics.get(e.topic)
        if topic is None:
            topic = topics[e.topic] = e.topic.encode()
        found.append((nid, id_key(e.originator_id), e.originator_version, topic, e.state))
    return found


def stream_link(prev: bytes, key: bytes, version: int, topic: bytes, state: bytes) -> bytes:
    """The stream hash of one stored event, after its stream's previous one (``prev``)."""
    return sha256(
        b"".join((prev, _FRAME.pack(len(key), version, len(topic)), key, topic, state))
    ).digest()


def global_link(prev: bytes, notification_id: int, stream_hash: bytes) -> bytes:
    """The global hash of the row at ``notification_id``, after the row before it."""
    return sha256(prev + _POSITION.pack(notification_id) + stream_hash).digest()


def link_events(
    global_head: bytes, stream_heads: dict[bytes, bytes], events: Iterable[ChainInput]
) -> list[ChainRow]:
    """Chain rows for ``events`` in notification order, after ``global_head`` and each
    originator's ``stream_heads`` (those left out start from ``GENESIS``); ``stream_heads``
    is brought up to date.

    The writer and the verifier both chain with this (the verifier compares its rows with the
    stored ones), so it is ``stream_link`` and ``global_link`` inlined: it runs once per event
    on every save and every verification."""
    rows: list[ChainRow] = []
    append, get, frame, position = rows.append, stream_heads.get, _FRAME.pack, _POSITION.pack
    for notification_id, key, version, topic, state in events:
        stream = sha256(
            b"".join((get(key, GENESIS), frame(len(key), version, len(topic)), key, topic, state))
        ).digest()
        stream_heads[key] = stream
        global_head = sha256(global_head + position(notification_id) + stream).digest()
        append((notification_id, key, version, stream, global_head))
    return rows


def links_hold(
    global_head: bytes, stream_heads: dict[bytes, bytes], events: Sequence[LinkedEvent]
) -> bytes | None:
    """The global hash after ``events`` if each one's stored hashes are the ones recomputed
    from its bytes (``stream_heads`` then brought up to date, as ``link_events`` does); None at
    the first that is not, ``stream_heads`` left as it was.

    The verifier's pass over an intact page: ``link_events`` inlined once more, comparing as it
    goes instead of building the rows to compare (a third of the verifier's time)."""
    replaced: list[bytes] = []
    keep, get, frame, position = replaced.append, stream_heads.get, _FRAME.pack, _POSITION.pack
    for notification_id, key, version, topic, state, stored_stream, stored_global in events:
        keep(prev := get(key, GENESIS))
        stream = sha256(
            b"".join((prev, frame(len(key), version, len(topic)), key, topic, state))
        ).digest()
        stream_heads[key] = stream
        global_head = sha256(global_head + position(notification_id) + stream).digest()
        if stream != stored_stream or global_head != stored_global:
            for i in range(len(replaced) - 1, -1, -1):  # latest first: each stream's first stays
                if replaced[i] is GENESIS:  # get's default: the stream was not there
                    stream_heads.pop(events[i][1], None)
                else:
                    stream_heads[events[i][1]] = replaced[i]
            return None
    return global_head


def first_versions(events: Sequence[ChainInput]) -> dict[bytes, int]:
    """Each originator's first version among ``events``: whose stream head must be read from
    the store (a first version of 1 has none)."""
    found: dict[bytes, int] = {}
    for event in events:
        if event[1] not in found:
            found[event[1]] = event[2]
    return {k: v for k, v in found.items() if v > 1}
