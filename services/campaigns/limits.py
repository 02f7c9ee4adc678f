"""Campaign rate limits: token buckets per channel and per sender (a long code, a From address).

A send needs a token from its channel's bucket and from its sender's bucket, when those are
limited; a channel or sender without a limit is not held back.  Rates come from configuration
as text ("1/s", "600/min", "10000/h") or as ``Rate`` values; a rate of zero or below is a
``ConfigError`` at construction, not a campaign that silently never sends.

The buckets are pure: they take the time as an argument (a monotonic clock in seconds), so
they are tested without sleeping.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from contracts.errors import ConfigError

_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "hour": 3600.0}


@dataclass(frozen=True)
class Rate:
    """``count`` sends per ``per_seconds``; up to ``burst`` at once after a quiet spell."""

    count: float
    per_seconds: float = 1.0
    burst: int = 1

    def __post_init__(self) -> None:
        if not (self.count > 0 and math.isfinite(self.count)):
            raise ConfigError(
                f"a campaign rate must be above zero (got {self.count}/{self.per_seconds}s); "
                "to hold a campaign back, pause it"
            )
        if not (self.per_seconds > 0 and math.isfinite(self.per_seconds)):
            raise ConfigError(f"a rate's period must be above zero (got {self.per_seconds}s)")
        if self.burst < 1:
            raise ConfigError(f"a rate's burst must be at least 1 (got {self.burst})")

    @property
    def per_second(self) -> float:
        return self.count / self.per_seconds

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``"1/s"``, ``"600/min"``, ``"10000/h"``, optionally ``"…,burst=5"``."""
        spec, _, extra = text.strip().partition(",")
        count, slash, unit = spec.partition("/")
        burst = 1
        if extra:
            name, _, value = extra.partition("=")
            if name.strip() != "burst":
                raise ConfigError(f"rate {text!r}: only ',burst=N' may follow the rate")
            try:
                burst = int(value)
            except ValueError:
                raise ConfigError(f"rate {text!r}: burst must be a whole number") from None
        unit = unit.strip() or "s"
        if not slash or unit not in _UNITS:
            raise ConfigError(
                f"rate {text!r}: write it as COUNT/UNIT with UNIT one of s, min, h (e.g. 1/s)"
            )
        try:
            value = float(count)
        except ValueError:
            raise ConfigError(f"rate {text!r}: {count!r} is not a number") from None
        return cls(value, _UNITS[unit], burst)


class TokenBucket:
    """Holds up to ``burst`` tokens, refilled at ``rate.per_second``; starts full."""

    def __init__(self, rate: Rate, now: float) -> None:
        self.rate = rate
        self._tokens = float(rate.burst)
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(
                float(self.rate.burst), self._tokens + (now - self._at) * self.rate.per_second
            )
            self._at = now

    def wait(self, now: float) -> float:
        """Seconds until a token is there (0: now)."""
        self._refill(now)
        missing = 1.0 - self._tokens
        return 0.0 if missing <= 1e-9 else missing / self.rate.per_second

    def take(self, now: float) -> None:
        self._refill(now)
        self._tokens -= 1.0

    def change(self, rate: Rate, now: float) -> None:
        """Refill at ``rate`` from ``now`` on (what was earned so far stays, up to the burst)."""
        self._refill(now)
        self.rate = rate
        self._tokens = min(self._tokens, float(rate.burst))


@dataclass(frozen=True)
class RateLimits:
    """The configured limits.  ``channels``: channel -> rate; ``senders``: sender -> rate, where
    ``sender_of`` names the sender each channel sends from (the SMS long code, the e-mail From
    address: one per channel in this hub's configuration)."""

    channels: Mapping[str, Rate] = field(default_factory=dict)
    senders: Mapping[str, Rate] = field(default_factory=dict)
    sender_of: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, rate in {**self.channels, **self.senders}.items():
            if not isinstance(rate, Rate):
                raise ConfigError(f"rate limit {key!r}: expected a Rate, got {rate!r}")

    @classmethod
    def parse(
        cls, specs: Mapping[str, str], *, sender_of: Mapping[str, str] | None = None
    ) -> RateLimits:
        """From text: ``{"sms": "1/s", "email": "600/min", "sender:+14155550100": "1/s"}``."""
        channels: dict[str, Rate] = {}
        senders: dict[str, Rate] = {}
        for key, text in specs.items():
            if key.startswith("sender:"):
                senders[key.removeprefix("sender:")] = Rate.parse(text)
            else:
                channels[key] = Rate.parse(text)
        return cls(channels, senders, dict(sender_of or {}))

    def buckets(self, now: float) -> Throttle:
        """Fresh, full buckets for one run."""
        return Throttle(self, now)


class Throttle:
    """The live buckets of one run: when a send on a channel may go, and taking its tokens."""

    def __init__(self, limits: RateLimits, now: float) -> None:
        by_sender = {s: TokenBucket(r, now) for s, r in limits.senders.items()}
        by_channel = {c: TokenBucket(r, now) for c, r in limits.channels.items()}
        self._limits = limits
        self._by_sender = by_sender
        self._by_channel = by_channel
        self._of_channel: dict[str, list[TokenBucket]] = {}

    def _for(self, channel: str) -> list[TokenBucket]:
        found = self._of_channel.get(channel)
        if found is None:
            sender = self._limits.sender_of.get(channel)
            found = [
                bucket
                for bucket in (self._by_channel.get(channel), self._by_sender.get(sender or ""))
                if bucket is not None
            ]
            self._of_channel[channel] = found
        return found

    def wait(self, channel: str, now: float) -> float:
        """Seconds until a send on ``channel`` may go (0: now)."""
        return max((b.wait(now) for b in self._for(channel)), default=0.0)

    def take(self, channel: str, now: float) -> None:
        for bucket in self._for(channel):
            bucket.take(now)

    def follow(self, channel_rates: Mapping[str, float], now: float) -> bool:
        """Take the channels' rates (messages a second) as they are now: a campaign's limits
        may change while it runs.  A channel not named keeps its bucket.  True if any changed."""
        changed = False
        for channel, per_second in channel_rates.items():
            if not per_second > 0:
                continue  # the campaign refuses a rate of zero; never stop a channel here
            bucket = self._by_channel.get(channel)
            if bucket is not None and math.isclose(bucket.rate.per_second, per_second):
                continue
            rate = Rate(per_second, burst=bucket.rate.burst if bucket else 1)
            if bucket is None:
                self._by_channel[channel] = TokenBucket(rate, now)
                self._of_channel.pop(channel, None)
            else:
                bucket.change(rate, now)
            changed = True
        return changed


__all__ = ["Rate", "RateLimits", "Throttle", "TokenBucket"]
