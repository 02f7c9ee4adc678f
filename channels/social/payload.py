"""Reading providers' webhook JSON: each missing or mistyped field is named by its path.

Provider payloads are read field by field rather than through pydantic models: pydantic models
live in ``contracts/`` only, and what the adapters need is a few fields out of large, evolving
documents whose unknown parts must be ignored, not rejected.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from pydantic import ValidationError

from contracts.errors import InputError

__all__ = [
    "MalformedPayload",
    "at",
    "contract_values",
    "describe_validation_error",
    "from_unix",
    "objects",
    "optional",
    "parse_json",
    "required",
]

T = TypeVar("T")

_KIND_NAMES = {str: "a string", int: "an integer", dict: "an object", list: "an array"}


class MalformedPayload(InputError):
    """A webhook body that is not the documented shape; answered with 400 and this message."""


def parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedPayload(f"the body is not valid JSON: {exc}") from None


def at(path: str, key: str | int) -> str:
    """The path of ``key`` inside ``path``, as error messages show it: entry[0].changes."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _typed(value: Any, kind: type[T], where: str) -> T:
    # bool is an int in Python, but true is not a Telegram chat id.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        got = type(value).__name__ if value is not None else "null"
        raise MalformedPayload(
            f"{where}: expected {_KIND_NAMES.get(kind, kind.__name__)}, got {got}"
        )
    return value


def required(obj: dict[str, Any], key: str, kind: type[T], path: str = "") -> T:
    """``obj[key]``, which must be present and of ``kind``."""
    if key not in obj:
        raise MalformedPayload(f"{at(path, key)}: missing")
    return _typed(obj[key], kind, at(path, key))


def optional(obj: dict[str, Any], key: str, kind: type[T], path: str = "") -> T | None:
    """``obj[key]`` if present and not null, checked to be of ``kind``."""
    value = obj.get(key)
    return None if value is None else _typed(value, kind, at(path, key))


def objects(
    obj: dict[str, Any], key: str, path: str = "", *, must: bool = False
) -> list[tuple[str, dict[str, Any]]]:
    """The objects in the array ``obj[key]`` with their paths; absent is [] unless ``must``."""
    items = required(obj, key, list, path) if must else optional(obj, key, list, path) or []
    where = at(path, key)
    return [(at(where, i), _typed(item, dict, at(where, i))) for i, item in enumerate(items)]


def from_unix(value: str | int, where: str, *, millis: bool = False) -> datetime:
    """A provider's epoch timestamp (seconds, or milliseconds) as an aware UTC datetime."""
    try:
        number = int(value)
        return datetime.fromtimestamp(number / 1000 if millis else number, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        unit = "milliseconds" if millis else "seconds"
        raise MalformedPayload(f"{where}: expected a Unix time in {unit}, got {value!r}") from None


def describe_validation_error(exc: ValidationError) -> str:
    """``field: reason; …`` for each value a contract refused."""
    return "; ".join(
        f"{'.'.join(map(str, error['loc']))}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)
    )


@contextmanager
def contract_values(path: str) -> Iterator[None]:
    """Report a value the contract refuses (a wa_id that is no phone number, an id with control
    characters) as malformed, at the place in the payload it came from."""
    try:
        yield
    except ValidationError as exc:
        raise MalformedPayload(f"{path}: {describe_validation_error(exc)}") from None
