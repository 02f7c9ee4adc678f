"""Signed checkpoints of the chain's head: evidence kept outside the database.

The chain shows any change made without recomputing the hashes after it; whoever can write
the database can recompute them all, though.  A checkpoint — the global head hash at a
notification id, signed with the audit key (Ed25519) and kept elsewhere (another machine, a
WORM bucket, a printout) — proves that the history up to that id has not been rewritten
since: the verifier recomputes the head at that id from the stored events and compares.

A checkpoint is a JSON file::

    {"format": "switchboard-chain-checkpoint", "format_version": 1,
     "notification_id": 12345, "events": 12345, "head": "<64 hex digits>",
     "created_at": "2026-01-05T08:30:00+00:00", "public_key": "<base64, 32 bytes>",
     "signature": "<base64, 64 bytes>"}

The signature is over the canonical JSON (sorted keys, no spaces, UTF-8) of every other
field.  Keys are base64 of their 32 raw bytes, or PEM (PKCS#8 / SubjectPublicKeyInfo).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from contracts.errors import ConfigError, SwitchboardError
from services.audit.verify import ChainReport

FORMAT = "switchboard-chain-checkpoint"
FORMAT_VERSION = 1
SIGNING_KEY = "SWITCHBOARD_AUDIT_SIGNING_KEY"
PUBLIC_KEY = "SWITCHBOARD_AUDIT_PUBLIC_KEY"


class CheckpointError(SwitchboardError):
    """A checkpoint file that cannot be read as one (not evidence either way)."""


# -- keys ------------------------------------------------------------------------------------


def new_key_pair() -> tuple[str, str]:
    """A new signing key and its public key, as the settings take them."""
    key = Ed25519PrivateKey.generate()
    return _b64(key.private_bytes_raw()), public_key_text(key.public_key())


def public_key_text(key: Ed25519PublicKey) -> str:
    return _b64(key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def signing_key(private_text: str | None, public_text: str | None) -> Ed25519PrivateKey:
    """The configured signing key, checked against the configured public key if there is one."""
    if not private_text:
        raise ConfigError(
            f"no audit signing key: set {SIGNING_KEY} (or {SIGNING_KEY}_FILE); "
            "`switchboard audit keygen` makes one"
        )
    key = _private_key(private_text)
    if public_text and public_key_text(key.public_key()) != _public_text(public_text):
        raise ConfigError(
            f"{SIGNING_KEY} is not the private half of {PUBLIC_KEY}: a checkpoint signed with it "
            "would be refused; configure the pair `switchboard audit keygen` printed"
        )
    return key


def trusted_public_key(private_text: str | None, public_text: str | None) -> str:
    """The public key checkpoints must be signed with: the configured one, else the signing
    key's own."""
    if public_text:
        return _public_text(public_text)
    if private_text:
        return public_key_text(_private_key(private_text).public_key())
    raise ConfigError(
        f"no key to check checkpoints with: set {PUBLIC_KEY} (the public key they are signed with)"
    )


def _private_key(text: str) -> Ed25519PrivateKey:
    problem = f"{SIGNING_KEY}: not an Ed25519 private key (base64 of 32 bytes, or PEM)"
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = load_pem_private_key(text.encode(), password=None)
        else:
            key = Ed25519PrivateKey.from_private_bytes(_raw(text))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(problem) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(problem)
    return key


def _public_text(text: str) -> str:
    """A configured public key in the form checkpoints carry it (base64 of its 32 bytes)."""
    text = text.strip()
    problem = f"{PUBLIC_KEY}: not an Ed25519 public key (base64 of 32 bytes, or PEM)"
    try:
        if text.startswith("-----BEGIN"):
            key = load_pem_public_key(text.encode())
        else:
            key = Ed25519PublicKey.from_public_bytes(_raw(text))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(problem) from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(problem)
    return public_key_text(key)


def _raw(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError(text) from None


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# -- checkpoints ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    notification_id: int
    events: int
    head: bytes
    created_at: datetime
    public_key: str
    signature: bytes
    source: str = ""  # the file it was read from

    def fields(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "notification_id": self.notification_id,
            "events": self.events,
            "head": self.head.hex(),
            "created_at": self.created_at.isoformat(),
            "public_key": self.public_key,
        }

    def to_json(self) -> str:
        return json.dumps({**self.fields(), "signature": _b64(self.signature)}, indent=2) + "\n"


def _signed_bytes(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def sign_checkpoint(report: ChainReport, key: Ed25519PrivateKey) -> Checkpoint:
    """A checkpoint of the head ``report`` verified."""
    unsigned = Checkpoint(
        notification_id=report.last_notification_id,
        events=report.events,
        head=report.head,
        created_at=datetime.now(UTC).replace(microsecond=0),
        public_key=public_key_text(key.public_key()),
        signature=b"",
    )
    return replace(unsigned, signature=key.sign(_signed_bytes(unsigned.fields())))


def read_checkpoint(path: Path) -> Checkpoint:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path} cannot be read as a checkpoint: {e}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a switchboard chain checkpoint")
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {data.get('format_version')!r}, this release reads "
            f"{FORMAT_VERSION}"
        )
    try:
        checkpoint = Checkpoint(
            notification_id=_count(data["notification_id"]),
            events=_count(data["events"]),
            head=bytes.fromhex(data["head"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            public_key=str(data["public_key"]),
            signature=base64.b64decode(data["signature"], validate=True),
            source=str(path),
        )
    except (KeyError, TypeError, ValueError, binascii.Error) as e:
        raise CheckpointError(f"{path} is a damaged checkpoint ({type(e).__name__}: {e})") from None
    if len(checkpoint.head) != 32:
        raise CheckpointError(f"{path} is a damaged checkpoint (its head is not 32 bytes)")
    return checkpoint


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{value!r} is not a notification id or count")
    return value


@dataclass(frozen=True)
class Verdict:
    holds: bool
    text: str


def judge(checkpoint: Checkpoint, report: ChainReport, trusted_key: str) -> Verdict:
    """Does the store still have the history ``checkpoint`` signed?  ``trusted_key``: the
    public key checkpoints must be signed with (``trusted_public_key``)."""
    n = checkpoint.notification_id
    if checkpoint.public_key != trusted_key:
        return Verdict(
            False,
            f"signed with the key {checkpoint.public_key}, not the configured audit key "
            f"{trusted_key}: made for another store or with a replaced key (if that key is "
            f"trusted, verify with {PUBLIC_KEY} set to it)",
        )
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(checkpoint.public_key))
        public.verify(checkpoint.signature, _signed_bytes(checkpoint.fields()))
    except (InvalidSignature, ValueError, binascii.Error):
        return Verdict(False, "its signature does not match its contents: the file was altered")
    found = report.heads_at.get(n)
    if found == checkpoint.head:
        return Verdict(True, f"holds: the chain at notification {n} has the signed head")
    if found is not None:
        return Verdict(
            False,
            f"the chain at notification {n} has the head {found.hex()}, the checkpoint signed "
            f"{checkpoint.head.hex()}: the history up to {n} was rewritten",
        )
    broken = report.first_break
    if broken is not None and (broken.notification_id or 0) <= n:
        where = broken.notification_id
        first = f"at notification {where}" if where is not None else "at its start record"
        return Verdict(False, f"not checked: the chain breaks first, {first}")
    if n > report.stored_up_to:
        return Verdict(
            False,
            f"the store ends at notification {report.stored_up_to}, before the checkpoint's "
            f"{n}: events were removed",
        )
    return Verdict(
        False, f"notification {n} is no longer in the chain: events were removed or renumbered"
    )
