"""What a domain decision refuses (the domain imports nothing outside itself; the history,
at the edge of the domain, turns these into the project's errors for the API and the CLI)."""

from __future__ import annotations


class DecisionRefused(Exception):
    """The decision contradicts what is recorded (a merge of a merged customer, a stale edit)."""


class InvalidDecision(ValueError):
    """The decision makes no sense as asked (a customer merged into itself)."""
