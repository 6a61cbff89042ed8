"""``triggerstream report``: what the offers did, from decision and attribution records."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from triggerstream.cli.app import fail, main
from triggerstream.cli.options import OUTPUT, writable


@main.command()
@click.option(
    "--decisions",
    "decision_files",
    multiple=True,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Decision records (JSON Lines, e.g. from replay --decisions); repeatable.",
)
@click.option(
    "--attributions",
    "attribution_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Attribution records (JSON Lines, e.g. from replay --attributions); repeatable.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.option("--output", type=OUTPUT, default="-", help="Where to write [stdout].")
@click.option(
    "--plot", type=click.Path(dir_okay=False, path_type=Path), help="Also draw a PNG chart."
)
@click.option(
    "--min-sample",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Fewer sent or held out than this per group: lift says 'not enough data'.",
)
def report(
    decision_files: tuple[Path, ...],
    attribution_files: tuple[Path, ...],
    output_format: str,
    output: Path,
    plot: Path | None,
    min_sample: int,
) -> None:
    """Matches, sends, suppressions, conversions, revenue and lift over the holdout,
    by rule, variant and channel."""
    from triggerstream import report as reporting
    from triggerstream import report_plot
    from triggerstream.records import Attribution, Decision

    # Every destination is checked before the records are read: a chart that cannot be
    # written fails now, not after the report.
    writable(output, "--output")
    if plot is not None:
        writable(plot, "--plot")
        try:
            report_plot.plotting_available()
        except RuntimeError as error:
            fail(str(error))
    try:
        decided = reporting.read_records(decision_files, Decision)
        credited = reporting.read_records(attribution_files, Attribution)
    except reporting.NotRecords as error:
        fail(str(error))
        return
    built = reporting.build(decided, credited, min_sample)
    with (
        contextlib.nullcontext(sys.stdout)
        if str(output) == "-"
        else output.open("w", encoding="utf-8")
    ) as written:
        reporting.write(built, output_format, written)
    if plot is not None:
        try:
            report_plot.plot(built, plot)
        except (RuntimeError, OSError) as error:
            fail(f"--plot {plot}: {error}")
        click.echo(f"chart written to {plot}", err=True)
