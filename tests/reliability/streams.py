"""The streams the reliability suite runs: the demo's month of traffic with the users
changing their minds about being contacted."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any

import orjson

from triggerstream.traffic import history


def respectful_traffic(path: Path, events: int, users: int, seed: int = 11) -> Path:
    """A month of realistic traffic that ended two weeks ago (``traffic.history``), and
    for a third of the users some changes of heart in it: a channel's consent withdrawn
    or granted, an unsubscribe from email or push, offers opted out of (and sometimes
    back in), every offer snoozed for a few days. Written in event time order."""
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=45)
    lines = [orjson.loads(line) for line in history(events, users, seed, start)]
    rng = random.Random(seed)
    span = 30 * 86400
    extra: list[dict[str, Any]] = []

    def emit(user: str, at: float, topic: str, type_: str, props: dict[str, Any]) -> None:
        extra.append(
            {
                "topic": topic,
                "event_id": f"r{len(extra)}",
                "user_id": user,
                "type": type_,
                "occurred_at": (start + dt.timedelta(seconds=at)).isoformat(),
                "properties": props,
            }
        )

    for u in rng.sample(range(users), users // 3):
        user = f"u{u}"
        for _ in range(rng.randint(1, 3)):
            at = rng.uniform(3600, span)
            change = rng.choice(["consent", "unsubscribe", "opt_out", "snooze"])
            if change == "consent":
                emit(
                    user,
                    at,
                    "profile-events",
                    "consent_updated",
                    {
                        "channel": rng.choice(["in_app", "push", "email"]),
                        "granted": rng.random() < 0.4,
                    },
                )
            elif change == "unsubscribe":
                channel = rng.choice(["push", "email"])
                emit(user, at, "offer-feedback", "unsubscribed", {"channel": channel})
            elif change == "opt_out":
                emit(user, at, "profile-events", "preferences_updated", {"offers_opt_out": True})
                if rng.random() < 0.5:
                    back = at + rng.uniform(3600, 10 * 86400)
                    emit(
                        user,
                        back,
                        "profile-events",
                        "preferences_updated",
                        {"offers_opt_out": False},
                    )
            else:
                until = start + dt.timedelta(seconds=at + rng.uniform(86400, 5 * 86400))
                emit(
                    user,
                    at,
                    "profile-events",
                    "preferences_updated",
                    {"snooze_all_until": until.isoformat()},
                )
    everything = lines + extra
    everything.sort(key=lambda line: dt.datetime.fromisoformat(line["occurred_at"]))
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in everything))
    return path
