"""Subject access (GDPR Art. 15): everything the hub holds about one person, as JSON and as a
readable HTML page.

What it holds: the person as recorded now (addresses, profile, consent, merges), the card an
agent sees, the whole timeline (every channel, newest first, merged histories included), the
desk's conversations, and every stored event of the person's streams (the customer's and its
desk's) with its place in the store, so an auditor can check each one against the store's hash
chain (``switchboard audit verify``).  The HTML page needs nothing from the internet: its
style is inline.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from typing import Any
from uuid import UUID

from projections.timeline import TimelineView
from services.domain.desk import desk_id_for
from services.history.customers import CustomerHistory

PAGE = 500

# (originator id, version) -> the proof of that stored event (its chain hashes), if known.
Proof = Callable[[UUID, int], dict[str, Any] | None]


def chain_proof(history: CustomerHistory) -> Proof:
    """Each event's place in the store's hash chain: its notification id, its stream hash
    and the global hash after it (``switchboard audit verify`` recomputes them)."""
    cache: dict[UUID, dict[int, dict[str, Any]]] = {}

    def proof(originator_id: UUID, version: int) -> dict[str, Any] | None:
        if originator_id not in cache:
            rows = history.recorder.chain.proofs_of(originator_id)
            cache[originator_id] = {
                v: {"notification_id": n, "stream_hash": s.hex(), "global_hash": g.hex()}
                for v, n, s, g in rows
            }
        return cache[originator_id].get(version)

    return proof


def subject_access(
    history: CustomerHistory,
    view: TimelineView,
    customer_id: UUID,
    *,
    proof: Proof | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The person's full record as one JSON-ready document (raises CustomerNotFound);
    ``proof`` (default: the store's hash chain) gives each event's place in it."""
    proof = proof or chain_proof(history)
    customer = history.get_customer(customer_id)
    card = view.card(customer_id)
    timeline: list[dict[str, Any]] = []
    while True:
        page = view.timeline(customer_id, limit=PAGE, offset=len(timeline))
        timeline += [jsonable(_fields(e)) for e in page]
        if len(page) < PAGE:
            break
    streams = [("customer", customer_id), ("desk", desk_id_for(customer_id))]
    events = []
    for stream, originator in streams:
        for event in history.events.get(originator):
            entry = {
                "stream": stream,
                "originator_id": str(originator),
                "version": event.originator_version,
                "type": getattr(type(event), "TOPIC", type(event).__qualname__),
                "recorded_at": event.timestamp.isoformat(),
                "data": jsonable(
                    {
                        k: v
                        for k, v in _fields(event).items()
                        if k not in ("originator_id", "originator_version", "timestamp")
                    }
                ),
            }
            if proof is not None:
                entry["proof"] = proof(originator, event.originator_version)
            events.append(entry)
    from services.desk.store import load_desk

    desk = load_desk(history, customer_id)
    conversations = [jsonable(_fields(c)) for c in desk.conversations()] if desk else []
    return {
        "subject": str(customer_id),
        "exported_at": (now or datetime.now(UTC)).isoformat(),
        "person": {
            "addresses": list(customer.addresses),
            "profile": jsonable(customer.profile),
            "consent": dict(customer.consent),
            "merged_into": str(customer.merged_into) if customer.merged_into else None,
            "absorbed": jsonable(customer.absorbed),
            "first_recorded_at": customer.created_on.isoformat(),
            "contact_count": customer.contact_count,
        },
        "card": jsonable(_fields(card)) if card is not None else None,
        "timeline": timeline,
        "conversations": conversations,
        "events": events,
    }


def _fields(thing: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(thing) and not isinstance(thing, type):
        return {f.name: getattr(thing, f.name) for f in dataclasses.fields(thing)}
    return dict(vars(thing))


def render_html(document: dict[str, Any]) -> str:
    """The export as one self-contained HTML page a person can read."""
    e = html.escape
    person = document["person"]
    name = (person["profile"] or {}).get("name") or ", ".join(person["addresses"])
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{e(str(item.get(key) or ''))}</td>"
            for key in ("occurred_at", "channel", "direction", "type", "summary")
        )
        + "</tr>"
        for item in document["timeline"]
    )
    conversations = "".join(
        f"<tr><td>{e(str(c['opened_at']))}</td><td>{e(str(c['channel']))}</td>"
        f"<td>{e(str(c['status']))}</td><td>{e(str(c['assignee'] or ''))}</td>"
        f"<td>{e(str(c['contact_count']))}</td></tr>"
        for c in document["conversations"]
    )
    consent = "".join(
        f"<li>{e(k)}: {'yes' if v else 'no'}</li>" for k, v in person["consent"].items()
    )
    profile = "".join(f"<li>{e(str(k))}: {e(str(v))}</li>" for k, v in person["profile"].items())
    proven = sum(1 for ev in document["events"] if ev.get("proof"))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Your data held by us: {e(name)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#222}}
table{{border-collapse:collapse;width:100%;font-size:.9rem}}
td,th{{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}}
h1{{font-size:1.5rem}} h2{{font-size:1.15rem;margin-top:2rem}} .muted{{color:#666}}
</style></head><body>
<h1>Your data held by us</h1>
<p class="muted">Exported {e(document["exported_at"])} · reference {e(document["subject"])}</p>
<h2>You</h2>
<ul><li>addresses: {e(", ".join(person["addresses"]))}</li>{profile}
<li>first recorded: {e(person["first_recorded_at"])}</li>
<li>contacts recorded: {person["contact_count"]}</li></ul>
<h2>Your consent</h2><ul>{consent or "<li>none recorded</li>"}</ul>
<h2>Every contact with you ({len(document["timeline"])})</h2>
<table><tr><th>when (UTC)</th><th>channel</th><th>direction</th><th>what</th><th>summary</th>
</tr>{rows}</table>
<h2>Conversations ({len(document["conversations"])})</h2>
<table><tr><th>opened</th><th>channel</th><th>status</th><th>agent</th><th>contacts</th></tr>
{conversations}</table>
<h2>The record behind it</h2>
<p>{len(document["events"])} stored events ({proven} with their place in the store's hash
chain) are in the JSON export of this page, each as it was recorded.</p>
</body></html>
"""


def jsonable(value: Any) -> Any:
    """``value`` with UUIDs, datetimes, enums, dataclasses and sets as JSON takes them."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(_fields(value))
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    if isinstance(value, UUID | datetime):
        return str(value) if isinstance(value, UUID) else value.isoformat()
    return value
