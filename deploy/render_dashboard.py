"""Draw the Grafana dashboard's panels from a real run, without Grafana.

Runs ``triggerstream demo`` for a few minutes with a real Prometheus (Debian's, put in
.cache/prometheus/bin by scripts/fetch-prometheus) scraping its worker every 2 seconds,
then asks Prometheus every query of deploy/grafana/dashboards/triggerstream.json over
the run and plots each panel where the dashboard puts it (matplotlib). A query that
returns nothing is drawn as "no data" and listed at the end: the check that the
dashboard and the worker agree.

    .venv/bin/python deploy/render_dashboard.py --minutes 4 --out docs/dashboard.png
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "triggerstream.json"
SCRAPE = 2  # seconds


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def prometheus_binary() -> Path:
    for candidate in (ROOT / ".cache/prometheus/bin/prometheus", shutil.which("prometheus")):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    sys.exit("no prometheus binary: run scripts/fetch-prometheus first")


def grafana_to_promql(expr: str, seconds: float) -> str:
    """Grafana's variables as this run's values: every worker, a 30 s rate window."""
    return (
        expr.replace('instance=~"$instance"', 'instance=~".*"')
        .replace("$__rate_interval", "30s")
        .replace("$__range", f"{int(seconds)}s")
    )


def query_range(port: int, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": SCRAPE})
    url = f"http://127.0.0.1:{port}/api/v1/query_range?{params}"
    with urllib.request.urlopen(url, timeout=30) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def legend(template: str, labels: dict[str, str]) -> str:
    """Grafana's legend: ``{{label}}`` replaced by its value, by nothing when the series
    has no such label (Prometheus drops empty ones); no template: the label values."""
    if not template:
        return " ".join(v for k, v in sorted(labels.items()) if k != "__name__") or "value"
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)
    return " ".join(text.split()) or "value"


def run(minutes: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dashboard = json.loads(DASHBOARD.read_text())
    folder = Path(tempfile.mkdtemp(prefix="triggerstream-dashboard-"))
    web_port, prom_port = free_port(), free_port()
    (folder / "prometheus.yml").write_text(
        f"global: {{scrape_interval: {SCRAPE}s, evaluation_interval: {SCRAPE}s}}\n"
        "scrape_configs:\n"
        "  - job_name: triggerstream\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{web_port}']}}]\n"
    )
    prometheus = subprocess.Popen(
        [
            str(prometheus_binary()),
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(folder / "prometheus.log").open("wb"),
    )
    try:
        started = time.time()
        print(f"demo for {minutes} minutes, Prometheus on 127.0.0.1:{prom_port}", flush=True)
        demo = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("triggerstream")),
                "demo",
                "--web-port",
                str(web_port),
                "--users",
                "3000",
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            time.sleep(minutes * 60)
            if demo.poll() is not None:
                sys.exit(f"the demo stopped early with status {demo.returncode}")
            # Drawn while the demo still runs: the last values are live ones.
            draw(dashboard, prom_port, started, time.time(), out, plt)
        finally:
            demo.send_signal(signal.SIGINT)
            demo.wait(120)
    finally:
        prometheus.terminate()
        prometheus.wait(30)
        shutil.rmtree(folder, ignore_errors=True)


def draw(
    dashboard: dict[str, Any], port: int, start: float, end: float, out: Path, plt: Any
) -> None:
    # Grafana's row headers take a grid row each; drawn without them, the panels close up.
    headers = sorted(p["gridPos"]["y"] for p in dashboard["panels"] if p.get("type") == "row")
    panels = []
    for panel in dashboard["panels"]:
        if panel.get("type") != "row":
            pos = dict(panel["gridPos"])
            pos["y"] -= sum(1 for y in headers if y <= pos["y"])
            panels.append({**panel, "gridPos": pos})
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    figure = plt.figure(figsize=(20, rows * 0.42))
    grid = figure.add_gridspec(rows, 24, hspace=1.2, wspace=1.2, top=0.975, bottom=0.02)
    empty = []
    for panel in panels:
        pos = panel["gridPos"]
        axes = figure.add_subplot(
            grid[pos["y"] : pos["y"] + pos["h"], pos["x"] : pos["x"] + pos["w"]]
        )
        axes.set_title(panel["title"], fontsize=9, loc="left")
        series = []
        for target in panel.get("targets", []):
            expr = grafana_to_promql(target["expr"], end - start)
            for result in query_range(port, expr, start, end):
                points = [(float(t), float(v)) for t, v in result["values"]]
                points = [(t, v) for t, v in points if math.isfinite(v)]
                if points:
                    series.append(
                        (legend(target.get("legendFormat", ""), result["metric"]), points)
                    )
        if not series:
            empty.append(panel["title"])
            axes.text(0.5, 0.5, "no data", ha="center", va="center", color="grey")
            axes.set_xticks([])
            axes.set_yticks([])
            continue
        if panel["type"] == "stat":
            value = sum(points[-1][1] for _, points in series)
            axes.text(
                0.5,
                0.45,
                f"{value:,.1f}".removesuffix(".0"),
                ha="center",
                va="center",
                fontsize=20,
                fontweight="bold",
                color="tab:green",
            )
            axes.axis("off")
        elif panel["type"] == "table":
            ranked = sorted(series, key=lambda s: -s[1][-1][1])[:6]
            lines = [f"{name:<40} {points[-1][1]:>8,.0f}" for name, points in ranked]
            axes.text(0.02, 0.95, "\n".join(lines), va="top", family="monospace", fontsize=7)
            axes.axis("off")
        else:
            for name, points in sorted(series, key=lambda s: -max(v for _, v in s[1]))[:8]:
                axes.plot(
                    [(t - start) / 60 for t, _ in points],
                    [v for _, v in points],
                    label=name[:38],
                    linewidth=1,
                )
            axes.tick_params(labelsize=7)
            axes.set_xlabel("minutes", fontsize=7)
            axes.legend(fontsize=6, loc="upper left", frameon=False)
    figure.suptitle("triggerstream dashboard: its queries over a demo run", fontsize=12, y=0.995)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=80, bbox_inches="tight")
    print(f"wrote {out}; panels without data: {', '.join(empty) or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    arguments = parser.parse_args()
    run(arguments.minutes, arguments.out)


if __name__ == "__main__":
    main()
