"""Two followers in one process open each stored event once (``SharedDecodes``)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from projections.follower import SharedDecodes


@dataclass(frozen=True)
class Note:
    id: int


class Opener:
    def __init__(self) -> None:
        self.opened: list[int] = []
        self.prefetched: list[list[int]] = []

    def __call__(self, n: Note) -> tuple[str, int]:
        if n.id < 0:
            raise ValueError(f"cannot open {n.id}")
        self.opened.append(n.id)
        return ("event", n.id)

    def prefetch(self, notes: list[Note]) -> None:
        self.prefetched.append([n.id for n in notes])


def test_what_one_follower_opened_the_other_gets_as_it_is() -> None:
    shared, first, second = SharedDecodes(), Opener(), Opener()
    page = [Note(i) for i in range(1, 6)]
    events = shared.decode_page(page, first, first.prefetch)
    again = shared.decode_page([*page, Note(6)], second, second.prefetch)
    assert again[:5] == events and all(a is b for a, b in zip(events, again, strict=False))
    assert first.opened == [1, 2, 3, 4, 5] and second.opened == [6]  # each opened once
    assert first.prefetched == [[1, 2, 3, 4, 5]] and second.prefetched == [[6]]
    assert shared.decode_page(page, second, second.prefetch) == events
    assert second.prefetched == [[6]]  # nothing left to fetch keys for


def test_followers_reading_the_same_page_at_once_open_it_once() -> None:
    shared, opener = SharedDecodes(), Opener()
    page = [Note(i) for i in range(1, 2001)]
    results: list[list] = []
    threads = [
        threading.Thread(target=lambda: results.append(shared.decode_page(page, opener, list)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(opener.opened) == list(range(1, 2001))
    assert results[0] == results[1]


def test_an_event_that_does_not_open_is_its_error_in_its_place_and_not_kept() -> None:
    shared, opener = SharedDecodes(), Opener()
    for _ in range(2):
        found = shared.decode_page([Note(1), Note(-1), Note(2)], opener, opener.prefetch)
        assert found[0] == ("event", 1) and found[2] == ("event", 2)
        assert isinstance(found[1], ValueError) and "cannot open -1" in str(found[1])
    assert opener.prefetched == [[1, -1, 2], [-1]]  # tried again by the next follower


def test_only_the_latest_window_is_kept() -> None:
    shared, opener = SharedDecodes(window=100), Opener()
    for i in range(1, 1001, 10):
        shared.decode_page([Note(j) for j in range(i, i + 10)], opener, opener.prefetch)
    opener.prefetched.clear()
    shared.decode_page([Note(1000), Note(901), Note(1)], opener, opener.prefetch)
    assert opener.prefetched == [[1]]
