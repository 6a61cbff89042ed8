"""Cross-sell recommendations: co-purchase counts, then the catalog's complements.

Counts have no user in them: for each pair of distinct skus in one order, how many
orders held both. They are kept by the engine across users and survive erasure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

MAX_PARTNERS = 64
"""Partners remembered per sku (the most frequent), so counts stay bounded."""


@dataclass
class CoPurchaseCounts:
    """sku -> {other sku: orders that held both}."""

    pairs: dict[str, dict[str, int]] = field(default_factory=dict)

    def record_order(self, skus: Iterable[str]) -> None:
        """Count an order: each of its skus was bought with each other one."""
        distinct = sorted(set(skus))
        for sku in distinct:
            partners = self.pairs.setdefault(sku, {})
            for other in distinct:
                if other != sku:
                    partners[other] = partners.get(other, 0) + 1
            if len(partners) > MAX_PARTNERS:
                keep = sorted(partners.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_PARTNERS]
                self.pairs[sku] = dict(keep)

    def forget_order(self, sku: str, skus: Iterable[str]) -> None:
        """Take one order (of ``skus``) back out of ``sku``'s row: the worker's counts
        were stored ahead of the state of the user who ordered, and the order will be
        counted again when it is read again. A partner the row no longer keeps (beyond
        ``MAX_PARTNERS``) has nothing to take back."""
        partners = self.pairs.get(sku)
        if partners is None:
            return
        for other in set(skus):
            count = partners.get(other)
            if other == sku or count is None:
                continue
            if count > 1:
                partners[other] = count - 1
            else:
                del partners[other]

    def recommend(
        self,
        basket: Sequence[str],
        complements: dict[str, list[str]],
        exclude: set[str],
        max_items: int,
    ) -> list[tuple[str, float]]:
        """Up to ``max_items`` (sku, score) for a basket: most co-purchased first (score =
        orders with the basket's items), then complements in catalog order (score 0);
        never an excluded (owned) or in-basket sku."""
        blocked = exclude | set(basket)
        scores: dict[str, int] = {}
        for sku in basket:
            for other, count in self.pairs.get(sku, {}).items():
                if other not in blocked:
                    scores[other] = scores.get(other, 0) + count
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
        chosen: list[tuple[str, float]] = [(sku, float(score)) for sku, score in ranked]
        chosen = chosen[:max_items]
        picked = {sku for sku, _ in chosen}
        for sku in basket:
            for other in complements.get(sku, []):
                if len(chosen) >= max_items:
                    return chosen
                if other not in blocked and other not in picked:
                    chosen.append((other, 0.0))
                    picked.add(other)
        return chosen
