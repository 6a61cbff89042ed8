"""``triggerstream report --plot``: the conversion rate of each variant and of the
holdout, with their 95% intervals, per rule (needs matplotlib: the ``plot`` extra)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from triggerstream.report import Report, wilson


def plotting_available() -> None:
    """RuntimeError with the fix when ``--plot`` cannot draw (matplotlib missing)."""
    if importlib.util.find_spec("matplotlib") is None:
        raise RuntimeError("--plot needs matplotlib: pip install 'triggerstream[plot]'")


def plot(report: Report, path: Path) -> None:
    """Conversion rate per variant and for the holdout, with 95% intervals, per rule."""
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install 'triggerstream[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rules = sorted({rule for rule, _ in report.by_variant})
    figure, axes = plt.subplots(
        len(rules), 1, figsize=(8, 3.2 * len(rules)), squeeze=False, constrained_layout=True
    )
    for axis, rule in zip(axes[:, 0], rules, strict=True):
        labels, rates, lows, highs, colours = [], [], [], [], []
        for (r, variant), tally in sorted(report.by_variant.items()):
            if r != rule or not tally.emitted:
                continue
            low, high = wilson(tally.converted, tally.emitted)
            labels.append(f"{variant}\n(sent {tally.emitted})")
            rates.append(tally.converted / tally.emitted)
            lows.append(low)
            highs.append(high)
            colours.append("#2b6cb0")
        pool = report.holdout.get(rule)
        if pool is not None and pool.holdout:
            low, high = wilson(pool.holdout_converted, pool.holdout)
            labels.append(f"holdout\n(held {pool.holdout})")
            rates.append(pool.holdout_converted / pool.holdout)
            lows.append(low)
            highs.append(high)
            colours.append("#a0aec0")
        if not rates:
            axis.set_visible(False)
            continue
        errors = [
            [rate - low for rate, low in zip(rates, lows, strict=True)],
            [high - rate for rate, high in zip(rates, highs, strict=True)],
        ]
        bars = axis.bar(labels, rates, color=colours, yerr=errors, capsize=6)
        for bar, rate in zip(bars, rates, strict=True):
            axis.text(
                bar.get_x() + bar.get_width() / 2,
                rate / 2,
                f"{rate * 100:.1f}%",
                ha="center",
                va="center",
                color="white",
                fontweight="bold",
            )
        axis.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        axis.set_ylabel("conversion rate")
        lifts = [
            f"{variant}: {lift.difference * 100:+.1f} pts "
            f"[{lift.low * 100:+.1f}, {lift.high * 100:+.1f}]"
            for (r, variant), lift in sorted(report.lifts.items())
            if r == rule and lift is not None
        ]
        axis.set_title(
            f"{rule}: conversion with 95% intervals"
            + ("\nlift over holdout: " + "; ".join(lifts) if lifts else ""),
            fontsize=10,
        )
        axis.set_ylim(0, max(highs) * 1.25 or 1)
    figure.savefig(path, dpi=120)
    plt.close(figure)
