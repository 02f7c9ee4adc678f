"""Rows as arrays, for PostgreSQL statements that take a batch as ``unnest`` of one array per
column (bound in binary with ``%b``): one statement a batch, not one a row."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def as_columns(rows: Iterable[tuple], width: int) -> list[list[Any]]:
    """The rows as ``width`` lists, one per column (empty lists for no rows)."""
    found: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for column, value in zip(found, row, strict=True):
            column.append(value)
    return found
