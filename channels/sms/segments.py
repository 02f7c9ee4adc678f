"""How an SMS body travels: its encoding (GSM-7 or UCS-2) and how many segments it costs.

GSM 03.38: a body made only of the basic table's characters is sent in GSM-7, where the
extension table's characters (``^{}\\[~]|€`` and form feed) take two septets (escape + char).
Any other character forces UCS-2 for the whole body, counted in UTF-16 code units. One
segment holds 160 septets or 70 units; a concatenated message loses room to its header:
153 septets or 67 units per segment. An escape pair or a surrogate pair is never split
between two segments, so a part may hold one less.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["GSM7_BASIC", "GSM7_EXTENSION", "SmsEncoding", "SmsSegments", "count_segments"]

SmsEncoding = Literal["GSM-7", "UCS-2"]

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

_SINGLE = {"GSM-7": 160, "UCS-2": 70}
_MULTI = {"GSM-7": 153, "UCS-2": 67}


@dataclass(frozen=True)
class SmsSegments:
    encoding: SmsEncoding
    segments: int
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2


def _gsm7_widths(body: str) -> list[int] | None:
    widths = []
    for char in body:
        if char in GSM7_BASIC:
            widths.append(1)
        elif char in GSM7_EXTENSION:
            widths.append(2)
        else:
            return None
    return widths


def count_segments(body: str) -> SmsSegments:
    """The encoding and segment count of ``body``; an empty body is one (empty) segment."""
    widths = _gsm7_widths(body)
    encoding: SmsEncoding = "GSM-7"
    if widths is None:
        encoding = "UCS-2"
        # Characters outside the Basic Multilingual Plane are a surrogate pair: two units.
        widths = [2 if ord(char) > 0xFFFF else 1 for char in body]
    units = sum(widths)
    if units <= _SINGLE[encoding]:
        return SmsSegments(encoding=encoding, segments=1, units=units)
    room = _MULTI[encoding]
    segments, used = 1, 0
    for width in widths:
        if used + width > room:
            segments, used = segments + 1, 0
        used += width
    return SmsSegments(encoding=encoding, segments=segments, units=units)
