"""What a file is, judged from its bytes: the client's Content-Type is a claim to check.

Binary formats are recognised by their signatures (``filetype``: a small, dependency-free
matcher of magic numbers, which is all an allow-list of five formats needs, and unlike
libmagic it needs no system library); text is text when it is UTF-8 without control
characters.  CSV cannot be told from other text by its bytes, so text claimed as
``text/csv`` is stored as CSV, any other text as ``text/plain``.
"""

from __future__ import annotations

import re

import filetype

from contracts.errors import InputError

BINARY_TYPES = frozenset({"application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp"})
TEXT_TYPES = frozenset({"text/plain", "text/csv"})
ALLOWED_TYPES = BINARY_TYPES | TEXT_TYPES
# What a client sends when it does not know: no claim to check against.
NO_CLAIM = frozenset({"", "application/octet-stream"})
_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


class FileRefused(InputError):
    """An upload that is not stored; ``field`` names what was wrong, ``status`` the answer."""

    status = 422

    def __init__(self, reason: str, *, field: str = "file") -> None:
        super().__init__(reason)
        self.field = field


class FileTooLarge(FileRefused):
    status = 413


class FileTypeNotAllowed(FileRefused):
    status = 415


class FileTypeMismatch(FileRefused):
    status = 422


def detected_type(data: bytes) -> str | None:
    """The media type the bytes are, or None when they are nothing we recognise."""
    kind = filetype.guess(data[:8192])
    if kind is not None:
        return kind.mime
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if _CONTROL.search(text) else "text/plain"


def claimed_type(content_type: str | None) -> str:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return _ALIASES.get(media, media)


def checked_type(data: bytes, claimed: str | None, *, max_bytes: int) -> str:
    """The type to store ``data`` as; refuses it when too big, not allowed or not what the
    client claimed."""
    if len(data) > max_bytes:
        raise FileTooLarge(f"the file has {len(data)} bytes; at most {max_bytes} are accepted")
    if not data:
        raise FileRefused("the file is empty")
    claim = claimed_type(claimed)
    detected = detected_type(data)
    allowed = ", ".join(sorted(ALLOWED_TYPES))
    if detected is None or detected not in ALLOWED_TYPES:
        what = detected or "no type we recognise"
        raise FileTypeNotAllowed(f"the file's bytes are {what}; accepted are {allowed}")
    if detected == "text/plain":
        if claim in NO_CLAIM:
            return "text/plain"
        if claim in TEXT_TYPES:
            return claim
    elif claim in NO_CLAIM or claim == detected:
        return detected
    raise FileTypeMismatch(
        f"the file was sent as {claim} but its bytes are {detected}", field="file.content_type"
    )


def safe_filename(name: str | None) -> str:
    """The client's file name without folders or control characters (shown, never used as
    a path: the bytes are stored under their hash)."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = _CONTROL.sub("", base).strip().strip(".")
    return base[:255] or "file"
