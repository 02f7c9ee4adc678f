"""Which roles may call which ``/v1`` operation: the one table.

Every operation under ``/v1`` must have a row; ``services.gateway.auth.protect_v1`` refuses to
build an API with one that has none, and ``tests/integration/test_access_matrix.py`` walks the
served OpenAPI document against this table, role by role.

Why these rows:

- Reading a customer (lookup, timeline) is what agents and supervisors work with; auditors
  prove what happened; admins run the hub.  A campaign manager works on audiences and
  campaign outcomes, not on one person's history, so it does not read customers (least
  privilege: their screen needs no customer's contacts).
- A delivery report says how far one outbound message got: campaign managers track their
  sends with it, so they may read it too.
- Managing users and tokens is for admins only.
- Deciding about a customer (profile edits, linking an address, merging, unmerging, dismissing
  a suggested duplicate) is desk work: agents, supervisors and admins; each decision is an
  event naming who made it, and a merge can be undone.
- Presence and the screen-pop stream are the agent's own (``me``): whoever works the desk.
  The list of every agent with presence and load is for supervisors (and admins).
- The desk (conversations, their status, notes and files): agents, supervisors and admins
  work on it; auditors read it (files included), they change nothing.
- The access log (who read which customer) is for auditors and admins: it says what staff
  did, which agents and supervisors have no need to see.
- Campaigns (``/v1/campaigns…``: audience, templates, schedule, preview, start, pause,
  tracking) are the campaign manager's work, and admins'.  A preview shows a sample of
  recipients' addresses and rendered messages, which the campaign manager needs to check
  the text; it reads no customer's history.
"""

from __future__ import annotations

import re
from functools import lru_cache

from services.domain.users import Role

READ_CUSTOMERS = frozenset({Role.agent, Role.supervisor, Role.auditor, Role.admin})
READ_DELIVERIES = READ_CUSTOMERS | {Role.campaign_manager}
ADMINISTER = frozenset({Role.admin})
WORK_THE_DESK = frozenset({Role.agent, Role.supervisor, Role.admin})
SUPERVISE = frozenset({Role.supervisor, Role.admin})
AUDIT = frozenset({Role.auditor, Role.admin})
RUN_CAMPAIGNS = frozenset({Role.campaign_manager, Role.admin})

ROUTE_ROLES: dict[tuple[str, str], frozenset[Role]] = {
    ("GET", "/v1/lookup"): READ_CUSTOMERS,
    ("GET", "/v1/customers/{customer_id}/timeline"): READ_CUSTOMERS,
    ("GET", "/v1/customers"): READ_CUSTOMERS,
    ("GET", "/v1/customers/{customer_id}"): READ_CUSTOMERS,
    ("GET", "/v1/customers/{customer_id}/duplicates"): READ_CUSTOMERS,
    ("PATCH", "/v1/customers/{customer_id}"): WORK_THE_DESK,
    ("POST", "/v1/customers/{customer_id}/addresses"): WORK_THE_DESK,
    ("POST", "/v1/customers/{customer_id}/merge"): WORK_THE_DESK,
    ("POST", "/v1/customers/{customer_id}/unmerge"): WORK_THE_DESK,
    ("POST", "/v1/customers/{customer_id}/duplicates/{other_id}/dismiss"): WORK_THE_DESK,
    ("POST", "/v1/customers/{customer_id}/messages"): WORK_THE_DESK,
    ("GET", "/v1/deliveries/{message_ref}"): READ_DELIVERIES,
    ("GET", "/v1/customers/{customer_id}/conversations"): READ_CUSTOMERS,
    ("GET", "/v1/conversations/{conversation_id}"): READ_CUSTOMERS,
    ("POST", "/v1/conversations/{conversation_id}/status"): WORK_THE_DESK,
    ("POST", "/v1/customers/{customer_id}/notes"): WORK_THE_DESK,
    ("POST", "/v1/conversations/{conversation_id}/notes"): WORK_THE_DESK,
    ("POST", "/v1/customers/{customer_id}/files"): WORK_THE_DESK,
    ("POST", "/v1/conversations/{conversation_id}/files"): WORK_THE_DESK,
    ("GET", "/v1/customers/{customer_id}/files/{sha256}"): READ_CUSTOMERS,
    ("GET", "/v1/files/{sha256}"): READ_CUSTOMERS,
    ("GET", "/v1/agents/me"): WORK_THE_DESK,
    ("GET", "/v1/agents/me/conversations"): WORK_THE_DESK,
    ("POST", "/v1/agents/me/offers"): WORK_THE_DESK,
    ("PUT", "/v1/agents/me/presence"): WORK_THE_DESK,
    ("GET", "/v1/agents/me/events"): WORK_THE_DESK,
    ("WEBSOCKET", "/v1/agents/me/stream"): WORK_THE_DESK,
    ("GET", "/v1/agents"): SUPERVISE,
    ("GET", "/v1/supervisor/queues"): SUPERVISE,
    ("GET", "/v1/users"): ADMINISTER,
    ("POST", "/v1/users"): ADMINISTER,
    ("POST", "/v1/users/{username}/disable"): ADMINISTER,
    ("POST", "/v1/users/{username}/tokens"): ADMINISTER,
    ("DELETE", "/v1/users/{username}/tokens/{token_id}"): ADMINISTER,
    ("GET", "/v1/audit/access"): AUDIT,
    ("GET", "/v1/audit/customers/{customer_id}"): AUDIT,
    ("GET", "/v1/audit/customers/{customer_id}/export"): AUDIT,
    # Erasing a person cannot be undone: admins only (as `switchboard customer erase --as`).
    ("POST", "/v1/customers/{customer_id}/erasure"): ADMINISTER,
    ("POST", "/v1/campaigns"): RUN_CAMPAIGNS,
    ("GET", "/v1/campaigns"): RUN_CAMPAIGNS,
    ("GET", "/v1/campaigns/{campaign_id}"): RUN_CAMPAIGNS,
    ("GET", "/v1/campaigns/{campaign_id}/funnel"): RUN_CAMPAIGNS,
    ("PUT", "/v1/campaigns/{campaign_id}/audience"): RUN_CAMPAIGNS,
    ("POST", "/v1/campaigns/{campaign_id}/audience/csv"): RUN_CAMPAIGNS,
    ("PUT", "/v1/campaigns/{campaign_id}/templates/{channel}/{language}"): RUN_CAMPAIGNS,
    ("PUT", "/v1/campaigns/{campaign_id}/schedule"): RUN_CAMPAIGNS,
    ("GET", "/v1/campaigns/{campaign_id}/preview"): RUN_CAMPAIGNS,
    ("POST", "/v1/campaigns/{campaign_id}/start"): RUN_CAMPAIGNS,
    ("POST", "/v1/campaigns/{campaign_id}/pause"): RUN_CAMPAIGNS,
    ("POST", "/v1/campaigns/{campaign_id}/resume"): RUN_CAMPAIGNS,
    ("POST", "/v1/campaigns/{campaign_id}/cancel"): RUN_CAMPAIGNS,
}


def roles_for(method: str, path: str) -> frozenset[Role]:
    """The roles that may call ``method path`` (a route's path template); none if no row."""
    return ROUTE_ROLES.get((method.upper(), path), frozenset())


def _pattern(template: str) -> re.Pattern[str]:
    # A parameter is one path segment, as in the router.
    segments = template.split("/")
    return re.compile("/".join("[^/]+" if s.startswith("{") else re.escape(s) for s in segments))


_MATCHERS = [(method, path, _pattern(path)) for method, path in ROUTE_ROLES]


@lru_cache(maxsize=8192)  # called on every /v1 request; the paths in use repeat
def operation_of(method: str, request_path: str) -> tuple[str, frozenset[Role]] | None:
    """The table's row for a request (``GET``, ``/v1/customers/42/timeline``): its path
    template and roles; None when no row matches (then nobody may call it)."""
    for row_method, template, pattern in _MATCHERS:
        if row_method == method.upper() and pattern.fullmatch(request_path):
            return template, ROUTE_ROLES[(row_method, template)]
    return None


@lru_cache(maxsize=64)
def spelled(roles: frozenset[Role]) -> str:
    """'agent, supervisor or admin', in the order of ``Role``."""
    names = [str(role) for role in Role if role in roles]
    if len(names) <= 1:
        return "".join(names) or "no role (this operation has no rule)"
    return f"{', '.join(names[:-1])} or {names[-1]}"
