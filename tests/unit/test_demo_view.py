"""The demo's view: offer titles, the reasons in words, the last rules reload."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import get_args

from rich.console import Console

from triggerstream.demo_view import Tally, render
from triggerstream.records import REASON_WORDS, SuppressionReason
from triggerstream.reloads import RulesReloads

RULES = Path("/srv/demo/rules.yaml")
REFUSED = f"""\
[2026-12-03 16:30:01,002] [15438] [INFO] [^---Fetcher]: something else
[2026-12-03 16:30:02,120] [15438] [ERROR] rules file changed but refused; the running rules \
stay:
2 problem(s) in {RULES}:
{RULES}:3:5: rules[0].offer: no offer 'nowhere' in offers
{RULES}:4:1: rules[1]: something else
[2026-12-03 16:30:02,500] [15438] [INFO] [^Worker]: still running
"""


def test_every_reason_code_has_words() -> None:
    assert list(REASON_WORDS) == list(get_args(SuppressionReason))
    assert all(words and "\n" not in words for words in REASON_WORDS.values())


def reloads_after(tmp_path: Path, log: str) -> RulesReloads:
    path = tmp_path / "worker.log"
    path.write_text("[2026-12-03 16:00:00,000] [1] [INFO] an earlier run's rules reloaded\n")
    reloads = RulesReloads(path, path.stat().st_size, RULES)
    with path.open("a") as out:
        out.write(log)
    reloads.poll()
    return reloads


def test_before_any_reload_the_rules_are_the_ones_loaded_at_start(tmp_path: Path) -> None:
    assert reloads_after(tmp_path, "").describe() == "rules: loaded at start"
    assert RulesReloads(tmp_path / "missing.log", 0, RULES).describe() == "rules: loaded at start"


def test_an_applied_change_says_when_and_how_many_rules_run(tmp_path: Path) -> None:
    log = f"[2026-12-03 16:29:00,000] [15438] [INFO] rules reloaded from {RULES}: 12 rule(s) \n"
    assert reloads_after(tmp_path, log).describe() == (
        "rules: a change applied at 16:29:00 (12 rule(s))"
    )


def test_a_refused_change_says_its_first_problem(tmp_path: Path) -> None:
    assert reloads_after(tmp_path, REFUSED).describe() == (
        "rules: a change refused at 16:30:02, the running rules stay: "
        "rules.yaml:3:5: rules[0].offer: no offer 'nowhere' in offers (and 1 more)"
    )


def test_the_last_reload_counts_and_a_half_written_line_waits(tmp_path: Path) -> None:
    applied = "[2026-12-03 16:31:00,000] [15438] [INFO] rules reloaded from x: 13 rule(s)"
    reloads = reloads_after(tmp_path, REFUSED + applied)  # no newline yet
    assert "refused at 16:30:02" in reloads.describe()
    with reloads.log.open("a") as out:
        out.write("\n")
    reloads.poll()
    assert reloads.describe() == "rules: a change applied at 16:31:00 (13 rule(s))"


def test_an_unreadable_rules_file_is_a_refusal(tmp_path: Path) -> None:
    log = (
        "[2026-12-03 16:32:00,000] [1] [ERROR] cannot read the rules file /srv/r.yaml "
        "([Errno 2] No such file or directory); keeping the running rules\n"
    )
    assert reloads_after(tmp_path, log).describe() == (
        "rules: a change refused at 16:32:00, the running rules stay: cannot read the rules "
        "file /srv/r.yaml ([Errno 2] No such file or directory)"
    )


class Load:
    sent = 120

    def events_per_second(self) -> float:
        return 100.0


def test_the_view_shows_offer_titles_the_reasons_in_words_and_where_to_look() -> None:
    tally = Tally()
    tally.record(
        "offer-triggers.in-app",
        {
            "user_id": "user-00042",
            "rule_id": "free-skip-limit",
            "channel": "in_app",
            "offer": {"id": "premium", "title": "Unlimited skips with Premium"},
            "reason": {"summary": "6 skips in the last 60 minutes"},
            "triggered_at": "2026-12-03T16:00:00+00:00",
        },
    )
    for reason in ("cooldown", "no_channel", "cooldown"):
        tally.record("offer-decisions", {"outcome": "suppressed", "reason": reason})
    where = {
        "broker": "127.0.0.1:9092",
        "inspector": "http://127.0.0.1:6066/",
        "metrics": "http://127.0.0.1:6066/metrics",
        "log": "/tmp/triggerstream-demo-x-worker.log",
    }
    console = Console(width=160, file=io.StringIO())
    console.print(render(tally, Load(), where, "rules: loaded at start"))  # type: ignore[arg-type]
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "Unlimited skips with Premium" in shown
    assert REASON_WORDS["cooldown"] in shown
    assert REASON_WORDS["no_channel"] in shown
    assert REASON_WORDS["detractor"] not in shown  # only the reasons seen
    assert shown.index(REASON_WORDS["cooldown"]) < shown.index(REASON_WORDS["no_channel"])
    for line in ("rules: loaded at start", "inspector http://127.0.0.1:6066/", where["log"]):
        assert line in shown


def test_the_demo_population_lives_in_time_order_with_storage_tickets_before_the_reading() -> None:
    """The worker and replay agree only on traffic whose events come out in time order
    (a ticket dated before events already sent would be read after them)."""
    from triggerstream.simulation import Population

    lines = Population(300, seed=11).history(6000, 1_000_000.0)
    times = [dt.datetime.fromisoformat(e["occurred_at"]).timestamp() for _, e in lines]
    assert times == sorted(times)
    storage = [e for _, e in lines if e["properties"].get("category") == "storage-full"]
    assert storage, "near the quota, some teams open a ticket about it"
