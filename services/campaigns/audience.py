"""Who a campaign is for: a segment over the customer directory, its preview, and explicit
lists uploaded as CSV.

The directory's rows come from ``projections.audience.audience_rows`` (every customer not
merged into another); a ``Segment`` filters them in Python.  All conditions must hold; a list
condition (``tiers``, ``languages``, ``reachable_on``) holds when any of its values does,
``tags`` when the customer has every tag.  ``reachable_on`` asks only whether the customer
has an address on one of the channels: whether it works is the planner's question
(reachability, consent).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from contracts import Channel
from contracts.addresses import AddressError, normalize_party, parse_any_address
from contracts.errors import InputError
from projections.audience import AudienceRow

__all__ = [
    "AudiencePreview",
    "CsvAudience",
    "RowError",
    "Segment",
    "address_on",
    "parse_audience_csv",
    "preview",
    "select",
]

# How a normalized address on each channel begins ("@" for e-mail: anywhere in it).
_PREFIX = {
    str(Channel.sms): "+",
    str(Channel.voice): "+",
    str(Channel.whatsapp): "whatsapp:+",
    str(Channel.telegram): "telegram:",
    str(Channel.messenger): "messenger:",
}
_EMAIL = str(Channel.email)


def address_on(addresses: Iterable[str], channel: str) -> str | None:
    """The customer's address on ``channel`` (addresses are normalized), or None.  Plain
    loops over plain strings: the planner asks this for every recipient and channel."""
    channel = str(channel)
    if channel == _EMAIL:
        for a in addresses:
            if "@" in a:
                return a
        return None
    prefix = _PREFIX.get(channel)
    if prefix is None:
        return None
    for a in addresses:
        if a.startswith(prefix):
            return a
    return None


class Segment(BaseModel):
    """The customers a campaign is for; an empty segment is everyone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tags: list[str] = Field(default_factory=list, description="The customer has every tag.")
    tiers: list[str] = Field(default_factory=list, description="The profile's tier is one.")
    languages: list[str] = Field(default_factory=list, description="The profile's language.")
    last_contact_before: AwareDatetime | None = None
    last_contact_after: AwareDatetime | None = None
    reachable_on: list[Channel] = Field(
        default_factory=list, description="Has an address on one of these channels."
    )
    customer_ids: list[UUID] = Field(default_factory=list, description="An explicit list.")
    addresses: list[str] = Field(
        default_factory=list, description="An explicit list of addresses (any channel)."
    )

    @field_validator("addresses")
    @classmethod
    def _normalized(cls, values: list[str]) -> list[str]:
        return [parse_any_address(v) for v in values]

    def conditions(self) -> list[tuple[str, Callable[[AudienceRow], bool]]]:
        """Each condition as (what it says, test): a preview counts them one by one."""
        found: list[tuple[str, Callable[[AudienceRow], bool]]] = []
        if self.tags:
            tags = frozenset(self.tags)
            found.append(
                (f"tags {sorted(tags)}", lambda r: tags.issubset(r.profile.get("tags") or ()))
            )
        if self.tiers:
            tiers = frozenset(self.tiers)
            found.append((f"tier in {sorted(tiers)}", lambda r: r.profile.get("tier") in tiers))
        if self.languages:
            langs = frozenset(self.languages)
            found.append(
                (f"language in {sorted(langs)}", lambda r: r.profile.get("language") in langs)
            )
        before, after = self.last_contact_before, self.last_contact_after
        if before is not None:
            found.append(
                (
                    f"last contact before {before.isoformat()}",
                    lambda r: r.last_contact_at is not None and r.last_contact_at < before,
                )
            )
        if after is not None:
            found.append(
                (
                    f"last contact after {after.isoformat()}",
                    lambda r: r.last_contact_at is not None and r.last_contact_at > after,
                )
            )
        if self.reachable_on:
            channels = [str(c) for c in self.reachable_on]
            found.append(
                (
                    f"an address on {', '.join(channels)}",
                    lambda r: any(address_on(r.addresses, c) for c in channels),
                )
            )
        if self.customer_ids or self.addresses:
            ids, addresses = frozenset(self.customer_ids), frozenset(self.addresses)
            found.append(
                (
                    f"in the explicit list ({len(ids) + len(addresses)} entries)",
                    lambda r: r.customer_id in ids or not addresses.isdisjoint(r.addresses),
                )
            )
        return found

    def matcher(self) -> Callable[[AudienceRow], bool]:
        tests = [test for _, test in self.conditions()]
        if not tests:
            return lambda row: True
        if len(tests) == 1:
            return tests[0]

        def matches(row: AudienceRow) -> bool:
            for test in tests:
                if not test(row):
                    return False
            return True

        return matches


def select(rows: Iterable[AudienceRow], segment: Segment) -> Iterable[AudienceRow]:
    """The rows ``segment`` matches, lazily."""
    return filter(segment.matcher(), rows)


@dataclass(frozen=True)
class AudiencePreview:
    count: int
    sample: list[AudienceRow]
    looked_at: int
    # When nobody matches: which conditions each let how many through, so the manager sees
    # which one empties the audience.
    matching_each: dict[str, int] = field(default_factory=dict)

    @property
    def explanation(self) -> str:
        if self.count:
            return f"{self.count} of {self.looked_at} customers match"
        if not self.looked_at:
            return "no customer matches: the directory has no customers yet"
        each = "; ".join(f"{what}: {n}" for what, n in self.matching_each.items())
        return (
            f"no customer matches this segment ({self.looked_at} customers looked at; "
            f"customers meeting each condition alone: {each})"
        )


def preview(rows: Iterable[AudienceRow], segment: Segment, *, sample: int = 10) -> AudiencePreview:
    """How many customers the segment matches, and the first ``sample`` of them."""
    conditions = segment.conditions()
    each = dict.fromkeys((what for what, _ in conditions), 0)
    count, looked_at, picked = 0, 0, []
    for row in rows:
        looked_at += 1
        all_hold = True
        for what, test in conditions:
            if test(row):
                each[what] += 1
            else:
                all_hold = False
        if all_hold:
            count += 1
            if len(picked) < sample:
                picked.append(row)
    return AudiencePreview(count=count, sample=picked, looked_at=looked_at, matching_each=each)


# -- explicit lists from CSV ---------------------------------------------------------------


class CsvUnreadable(InputError):
    """The file as a whole cannot be read as an audience list (no header we know)."""


@dataclass(frozen=True)
class RowError:
    row: int  # the line's number in the file; the header is row 1
    column: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}, {self.column}: {self.reason}"


@dataclass
class CsvAudience:
    customer_ids: list[UUID]
    errors: list[RowError]
    rows: int  # data rows read

    @property
    def summary(self) -> str:
        return (
            f"{len(self.customer_ids)} customers from {self.rows} rows; "
            f"{len(self.errors)} row(s) refused"
        )


COLUMNS = ("customer_id", "phone", "email", "address")


def parse_audience_csv(
    text: str,
    *,
    find_customer: Callable[[str], UUID | None],
    customer_exists: Callable[[UUID], bool],
    default_region: str | None = None,
) -> CsvAudience:
    """Customers from a CSV with a header naming one or more of ``COLUMNS``; each row gives
    one customer, by the first non-empty of them.  Every row that cannot be taken is
    reported with its number, column and reason (a bad phone number, an unknown customer, a
    duplicate), and the rest are taken: never all-or-nothing.

    ``find_customer``: the customer an address leads to (``TimelineView.customer_for_address``);
    ``customer_exists``: whether an id is a customer (``view.summary(id) is not None``).
    """
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [(h or "").strip().lower() for h in (reader.fieldnames or [])]
    known = [c for c in COLUMNS if c in header]
    if not known:
        raise CsvUnreadable(
            f"the CSV's header {header or '(none)'} names none of the columns "
            f"{', '.join(COLUMNS)}: put one of them on the first line"
        )
    reader.fieldnames = header
    ids: list[UUID] = []
    errors: list[RowError] = []
    first_row_of: dict[UUID, int] = {}
    rows = 0
    for number, record in enumerate(reader, start=2):
        rows += 1
        column = next((c for c in known if (record.get(c) or "").strip()), None)
        if column is None:
            errors.append(RowError(number, "/".join(known), "empty: no customer on this row"))
            continue
        value = (record[column] or "").strip()
        customer_id, reason = _customer_of(
            column, value, find_customer, customer_exists, default_region
        )
        if customer_id is None:
            errors.append(RowError(number, column, reason))
            continue
        if customer_id in first_row_of:
            errors.append(
                RowError(
                    number,
                    column,
                    f"duplicate: the same customer as row {first_row_of[customer_id]}",
                )
            )
            continue
        first_row_of[customer_id] = number
        ids.append(customer_id)
    return CsvAudience(customer_ids=ids, errors=errors, rows=rows)


def _customer_of(
    column: str,
    value: str,
    find_customer: Callable[[str], UUID | None],
    customer_exists: Callable[[UUID], bool],
    default_region: str | None,
) -> tuple[UUID | None, str]:
    if column == "customer_id":
        try:
            customer_id = UUID(value)
        except ValueError:
            return None, f"{value!r} is not a customer id (a UUID)"
        if not customer_exists(customer_id):
            return None, f"unknown customer {customer_id}"
        return customer_id, ""
    try:
        if column == "phone":
            address = normalize_party(Channel.sms, value, default_region)
        elif column == "email":
            address = normalize_party(Channel.email, value)
        else:
            address = parse_any_address(value, default_region=default_region)
    except AddressError as e:
        what = {"phone": "bad phone number", "email": "bad e-mail address"}.get(
            column, "bad address"
        )
        return None, f"{what}: {e.reason}"
    found = find_customer(address)
    if found is None:
        return None, f"unknown customer: no customer has the address {address}"
    return found, ""
