"""The verifier's one-pass check of a page against the chain the writer computes."""

from __future__ import annotations

from uuid import UUID

from services.history.chain import GENESIS, id_key, link_events, links_hold

KEYS = [id_key(UUID(int=i)) for i in range(3)]
TOPIC = b"services.domain:Customer.MessageReceived"


def events(n: int) -> list[tuple[int, bytes, int, bytes, bytes]]:
    """``n`` events of three streams, interleaved, each stream's versions from 1."""
    return [
        (nid, KEYS[nid % 3], nid // 3 + 1, TOPIC, b'{"n": %d}' % nid) for nid in range(1, n + 1)
    ]


def linked(chain_input: list, rows: list) -> list:
    return [(*e, r[3], r[4]) for e, r in zip(chain_input, rows, strict=True)]


def test_a_page_as_the_writer_chained_it_holds_and_moves_the_heads_on() -> None:
    first, second = events(20)[:8], events(20)[8:]
    heads: dict[bytes, bytes] = {}
    rows = link_events(GENESIS, heads, first)
    rows += link_events(rows[-1][4], heads, second)

    mine: dict[bytes, bytes] = {}
    head = links_hold(GENESIS, mine, linked(first, rows[:8]))
    assert head == rows[7][4]
    assert links_hold(head, mine, linked(second, rows[8:])) == rows[-1][4]
    assert mine == heads


def test_a_changed_event_fails_the_page_and_leaves_the_heads_as_they_were() -> None:
    first, second = events(20)[:8], events(20)[8:]
    heads: dict[bytes, bytes] = {}
    rows = link_events(GENESIS, heads, first)
    rows += link_events(rows[-1][4], heads, second)
    mine: dict[bytes, bytes] = {}
    head = links_hold(GENESIS, mine, linked(first, rows[:8]))
    assert head is not None
    before = dict(mine)

    changed = linked(second, rows[8:])
    nid, key, version, topic, state, stream, global_hash = changed[7]
    changed[7] = (nid, key, version, topic, state + b" ", stream, global_hash)
    assert links_hold(head, mine, changed) is None
    assert mine == before

    no_row = linked(second, rows[8:])
    no_row[0] = (*no_row[0][:5], None, None)
    assert links_hold(head, mine, no_row) is None
    assert mine == before

    assert links_hold(GENESIS, fresh := {}, linked(second, rows[8:])) is None
    assert fresh == {}
