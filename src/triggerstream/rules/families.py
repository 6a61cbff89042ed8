"""Offer families in a rules file (docs/contract.md section 13): a family cap must name
the family of at least one offer, or it would hold back nothing, silently."""

from __future__ import annotations

from typing import Any

Path_ = tuple[str | int, ...]


def family_checks(document: dict[Any, Any]) -> list[tuple[Path_, str]]:
    """Every frequency cap whose ``family`` is no offer's family, with its place.

    Works on the raw document, like the other checks across the file: an offer with
    another problem still lends its family (its own id when it names none)."""
    offers = document.get("offers")
    families = sorted(
        {
            str(offer.get("family") or offer_id)
            for offer_id, offer in (offers.items() if isinstance(offers, dict) else ())
            if isinstance(offer, dict)
        }
    )
    policy = document.get("policy")
    caps = policy.get("frequency_caps") if isinstance(policy, dict) else None
    problems: list[tuple[Path_, str]] = []
    for index, cap in enumerate(caps if isinstance(caps, list) else ()):
        family = cap.get("family") if isinstance(cap, dict) else None
        if isinstance(family, str) and family not in families:
            known = ", ".join(families) or "none"
            problems.append(
                (
                    ("policy", "frequency_caps", index, "family"),
                    f"no offer is in family `{family}` (families: {known})",
                )
            )
    return problems
