"""Erasing a person (GDPR Art. 17) by crypto-shredding, everywhere the hub keeps them.

1. The history: an ``Erased`` event on each customer of the person's merge group (who, when,
   the legal basis and the reason, in clear: the audit trail), their addresses removed from the
   identities table in the same transaction, then their keys deleted
   (``CustomerHistory.erase``).  Their events stay, skeletons of themselves, and the hash
   chain over the stored bytes still verifies.
2. The views: the timeline and reachability followers remove every row of theirs when they
   reach the ``Erased`` event (on SQLite with ``secure_delete``: the freed pages are zeroed).  This
   function brings the views there before it returns, so the erasure is complete when the
   command ends (a running hub's follower gets there too; the tracking makes it once).
3. The blob store: the files their contacts and desk refer to, unless another person's
   timeline refers to the same file (content-addressed storage shares identical files).
4. Campaign plans: an ended campaign's plan is rewritten without them; a campaign still
   sending is named (erase again once it ended).
5. SQLite's write-ahead logs are checkpointed and truncated, so no old page image of theirs
   stays in a ``-wal`` file.

A contact from one of their addresses afterwards starts a new, separate customer.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

from projections.follower import TimelineFollower
from services.history.customers import Erasure

if TYPE_CHECKING:
    from services.bootstrap.bootstrap import Hub

log = logging.getLogger(__name__)

# Legal bases an erasure may cite (GDPR Art. 17(1) a to f), and the operator's own words for
# anything else ("other: ...").
BASES = {
    "consent-withdrawn": "Art. 17(1)(b): consent withdrawn",
    "no-longer-necessary": "Art. 17(1)(a): no longer necessary for the purpose",
    "objection": "Art. 17(1)(c): the person objected",
    "unlawful": "Art. 17(1)(d): unlawfully processed",
    "legal-obligation": "Art. 17(1)(e): a legal obligation to erase",
    "child": "Art. 17(1)(f): collected from a child",
}


@dataclass
class ErasureDone:
    erasure: Erasure
    files_removed: list[str] = field(default_factory=list)
    files_kept: list[str] = field(default_factory=list)  # someone else's history has them
    view_position: int = 0
    plans_scrubbed: list[str] = field(default_factory=list)  # ended campaigns' plans
    plans_running: list[str] = field(default_factory=list)  # still sending: erase again later


def erase_person(hub: Hub, customer_id: UUID, *, by: str, basis: str, reason: str) -> ErasureDone:
    history = hub.history(cached=False)
    erasure = history.erase(customer_id, by=by, basis=basis, reason=reason)
    log.info(
        "erased customer %s (%s customers: %s) on the basis %r",
        customer_id,
        len(erasure.group),
        ", ".join(str(i) for i in erasure.group),
        basis,
        extra={"customer_id": str(customer_id)},
    )
    # The views: up to the Erased events (and whatever came before them).
    view = hub.timeline_view()
    follower = TimelineFollower(history, view)
    target = max(erasure.notification_ids, default=0)
    while follower.position < target and follower.run_once():
        pass
    # The reachability view (what was learnt per address) likewise.
    reach = hub.reachability_follower()
    while reach.position < target and reach.run_once():
        pass
    done = ErasureDone(erasure, view_position=follower.position)
    # The files, unless another timeline refers to them too.
    blobs = hub.blobs()
    kept = view.files_in_use(erasure.files) if erasure.files else set()
    for sha in erasure.files:
        if sha in kept:
            done.files_kept.append(sha)
        elif blobs.delete(sha):
            done.files_removed.append(sha)
    scrub_campaign_plans(hub, set(erasure.group), done)
    if not hub.settings.is_postgres:
        for purpose in ("history", "views", "reachability"):
            truncate_wal(hub.settings.sqlite_path(purpose))
    return done


def scrub_campaign_plans(hub: Hub, group: set[UUID], done: ErasureDone) -> None:
    """Campaign plans (``var/campaigns/<id>.plan.jsonl``) name their recipients' addresses
    and messages.  An ended campaign's plan is rewritten without the person.  A campaign
    still sending goes on by position in its plan, so its plan is left alone and named: the
    dispatcher refuses the person's send (their consent is gone with them), and erasing
    again after the campaign ends removes them from it."""
    service = hub.campaign_service()
    for campaign in service.store.list():
        if not service.plans.has(campaign.id):
            continue
        sends = service.plans.load(campaign.id) or []
        if not any(s.customer_id in group for s in sends):
            continue
        if campaign.state in ("completed", "cancelled"):
            service.plans.save(campaign.id, [s for s in sends if s.customer_id not in group])
            done.plans_scrubbed.append(campaign.name)
        else:
            done.plans_running.append(campaign.name)


def truncate_wal(path: Path) -> bool:
    """Checkpoint a SQLite database's write-ahead log into it and truncate the log (False if
    a reader kept part of it: the next checkpoint of the hub finishes it)."""
    if not path.exists():
        return True
    db = sqlite3.connect(path, timeout=10)
    try:
        busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return busy == 0
    finally:
        db.close()
