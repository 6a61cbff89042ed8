"""Deterministic ids: derived from content, so a re-run or a crash never makes new ones."""

from __future__ import annotations

import hashlib
import zlib


def trigger_id(rule_id: str, user_id: str, cause_event_id: str, due: float | None = None) -> str:
    """The id of a rule's trigger for a user and its causing event (and due time, for
    timers). Also the id a suppressed decision would have sent under."""
    text = f"{rule_id}\x1f{user_id}\x1f{cause_event_id}"
    if due is not None:
        text += f"\x1f{due:.6f}"
    return "trg-" + hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


def decision_id(trigger: str, stage: str | None = None) -> str:
    """The id of a match's decision: its final one, or an earlier ``stage`` of it
    (``deferred``: the decision that it waits, docs/contract.md section 14)."""
    if stage is None:
        return "dec-" + trigger.removeprefix("trg-")
    text = f"{trigger}\x1f{stage}"
    return "dec-" + hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


def erasure_decision_id(user_id: str, event_id: str) -> str:
    text = f"erasure\x1f{user_id}\x1f{event_id}"
    return "dec-" + hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


def event_key(event_id: str) -> int:
    """A 64-bit key for the dedupe memory (8 bytes instead of the id).

    Two checksums side by side: stable across processes (unlike ``hash``) and several
    times cheaper than a cryptographic digest, on the path of every event. Only one
    user's last 24 hours of ids are compared, so a collision is vanishingly rare."""
    data = event_id.encode()
    return (zlib.crc32(data) << 32) | zlib.adler32(data)


def bucket(salt: str, user_id: str, buckets: int = 10_000) -> int:
    """A stable bucket in [0, buckets) for (salt, user): holdout and variants."""
    digest = hashlib.blake2b(f"{salt}\x1f{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % buckets
