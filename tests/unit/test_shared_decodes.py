"""Two followers in one process open each stored event once (``SharedDecodes``)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from projections.follower import SharedDecodes


@dataclass(frozen=True)
class Note:
    id: int


class Opener:
    def __init__(self) -> None:
        self.opened: list[int] = []

    def __call__(self, n: Note) -> tuple[str, int]:
        if n.id < 0:
            raise ValueError(f"cannot open {n.id}")
        self.opened.append(n.id)
        return ("event", n.id)


def test_what_one_follower_opened_the_other_gets_as_it_is() -> None:
    shared, first, second = SharedDecodes(), Opener(), Opener()
    page = [Note(i) for i in range(1, 6)]
    events = [shared.decode(first, n) for n in page]
    assert shared.missing(page) == []
    assert [shared.decode(second, n) for n in page] == events
    assert first.opened == [1, 2, 3, 4, 5] and second.opened == []  # opened once
    assert all(a is b for a, b in zip(events, [shared.decode(second, n) for n in page]))
    assert shared.missing([Note(6), Note(3)]) == [Note(6)]


def test_an_event_that_does_not_open_is_not_kept_and_fails_for_each_follower() -> None:
    shared, opener = SharedDecodes(), Opener()
    for _ in range(2):
        with pytest.raises(ValueError, match="cannot open -1"):
            shared.decode(opener, Note(-1))
    assert shared.missing([Note(-1)]) == [Note(-1)]


def test_only_the_latest_window_is_kept() -> None:
    shared, opener = SharedDecodes(window=100), Opener()
    for i in range(1, 1001):
        shared.decode(opener, Note(i))
    kept = 1000 - len(shared.missing([Note(i) for i in range(1, 1001)]))
    assert 100 <= kept <= 200  # at most twice the window before it is trimmed
    assert shared.missing([Note(1000), Note(901)]) == []
    assert shared.missing([Note(1)]) == [Note(1)]
