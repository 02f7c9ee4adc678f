"""SMS encoding and segment counting (GSM 03.38 and UCS-2), against hand-counted cases."""

from __future__ import annotations

import pytest

from channels.sms.segments import GSM7_BASIC, GSM7_EXTENSION, count_segments


@pytest.mark.parametrize(
    ("body", "encoding", "segments", "units"),
    [
        ("", "GSM-7", 1, 0),
        ("Your parcel 4711 leaves today.", "GSM-7", 1, 30),
        ("a" * 160, "GSM-7", 1, 160),
        ("a" * 161, "GSM-7", 2, 161),
        ("a" * 306, "GSM-7", 2, 306),
        ("a" * 307, "GSM-7", 3, 307),
        # Extension characters take two septets each.
        ("€" * 80, "GSM-7", 1, 160),
        ("€" * 81, "GSM-7", 2, 162),
        ("Grüße, Ñandù! {ok} [x] ~ | \\ ^", "GSM-7", 1, 38),
        ("Привет", "UCS-2", 1, 6),
        ("ж" * 70, "UCS-2", 1, 70),
        ("ж" * 71, "UCS-2", 2, 71),
        ("ж" * 134, "UCS-2", 2, 134),
        ("ж" * 135, "UCS-2", 3, 135),
        # Outside the BMP: a surrogate pair, two UTF-16 units.
        ("😀" * 35, "UCS-2", 1, 70),
        ("😀" * 36, "UCS-2", 2, 72),
    ],
)
def test_encoding_and_segments(body: str, encoding: str, segments: int, units: int) -> None:
    shape = count_segments(body)
    assert (shape.encoding, shape.segments, shape.units) == (encoding, segments, units)


def test_one_character_outside_gsm7_makes_the_whole_body_ucs2() -> None:
    assert count_segments("Thanks ✓").encoding == "UCS-2"
    # GSM-7 has a capital Ç but no small ç, and no backtick.
    assert count_segments("ça va").encoding == "UCS-2"
    assert count_segments("`code`").encoding == "UCS-2"
    assert count_segments("Ça va").encoding == "GSM-7"


def test_an_escape_pair_is_never_split_between_segments() -> None:
    # 306 septets would fit two segments of 153, but the € straddles the boundary.
    body = "a" * 152 + "€" + "a" * 152
    assert count_segments(body).units == 306
    assert count_segments(body).segments == 3


def test_a_surrogate_pair_is_never_split_between_segments() -> None:
    body = "ж" * 66 + "😀" + "ж" * 66
    assert count_segments(body).units == 134
    assert count_segments(body).segments == 3


def test_the_tables_match_gsm_03_38() -> None:
    assert len(GSM7_BASIC) == 127  # 128 code points less the escape to the extension table
    assert GSM7_EXTENSION == frozenset("\f^{}\\[~]|€")
    assert "\x1b" not in GSM7_BASIC
