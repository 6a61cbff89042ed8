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
    through: dict[str, int] = field(default_factory=dict)
    """sku -> position of the last order counted in its row (the worker's input
    offset), so that an order read again after a crash is not counted twice."""

    def record_order(self, skus: Iterable[str], position: int | None = None) -> None:
        """Count an order: each of its skus was bought with each other one. With a
        ``position`` (increasing along the input), a sku whose row has counted that
        position already is left alone."""
        distinct = sorted(set(skus))
        for sku in distinct:
            if position is not None:
                if self.through.get(sku, -1) >= position:
                    continue
                self.through[sku] = position
            partners = self.pairs.setdefault(sku, {})
            for other in distinct:
                if other != sku:
                    partners[other] = partners.get(other, 0) + 1
            if len(partners) > MAX_PARTNERS:
                keep = sorted(partners.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_PARTNERS]
                self.pairs[sku] = dict(keep)

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
