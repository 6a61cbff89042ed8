"""Respect as an invariant, checked over what reached the output topics.

Independent of the code that enforces it: the policy is read from the rules file with a
plain YAML load, the users' consent, opt-outs, snoozes and time zones are followed
through the input events in event time, and every trigger sent is checked against them
(docs/contract.md section 7): no more triggers than each frequency cap allows (a family
cap counting the offers of its family only, section 13), none on a channel without
consent, none while opted out or snoozed, no push or email in quiet hours.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import yaml

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(duration: str) -> float:
    return float(duration[:-1]) * UNITS[duration[-1]]


def timestamp(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


class Timeline:
    """A value of one user that changes at points of event time."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.values: list[Any] = []

    def set(self, at: float, value: Any) -> None:
        index = bisect.bisect_right(self.times, at)
        self.times.insert(index, at)
        self.values.insert(index, value)

    def at(self, when: float, default: Any = None) -> Any:
        """The value set last at or before ``when``."""
        index = bisect.bisect_right(self.times, when)
        return self.values[index - 1] if index else default


class Users:
    """Each user's consent per channel, opt-out, snooze and time zone over event time."""

    def __init__(self, events: Iterable[dict[str, Any]]) -> None:
        self.timelines: dict[tuple[str, str], Timeline] = defaultdict(Timeline)
        for event in events:
            user, kind, props = event["user_id"], event["type"], event.get("properties", {})
            at = timestamp(event["occurred_at"])
            if kind == "consent_updated":
                self.timelines[user, f"consent {props['channel']}"].set(at, props["granted"])
            elif kind == "unsubscribed":
                self.timelines[user, f"consent {props['channel']}"].set(at, False)
            elif kind == "preferences_updated":
                if "offers_opt_out" in props:
                    self.timelines[user, "opt out"].set(at, props["offers_opt_out"])
                if "snooze_all_until" in props:
                    until = props["snooze_all_until"]
                    self.timelines[user, "snooze"].set(
                        at, timestamp(until) if until is not None else None
                    )
            elif kind == "profile_updated" and props.get("timezone"):
                self.timelines[user, "zone"].set(at, props["timezone"])

    def value(self, user: str, name: str, at: float, default: Any = None) -> Any:
        timeline = self.timelines.get((user, name))
        return timeline.at(at, default) if timeline is not None else default


def in_quiet_hours(local: dt.datetime, start: str, end: str) -> bool:
    minute = local.hour * 60 + local.minute
    begin = int(start[:2]) * 60 + int(start[3:5])
    finish = int(end[:2]) * 60 + int(end[3:5])
    if begin <= finish:
        return begin <= minute < finish
    return minute >= begin or minute < finish


def violations(
    events: Iterable[dict[str, Any]], sent: Iterable[dict[str, Any]], rules: Path
) -> list[str]:
    """Every way the triggers ``sent`` break the rules file's policy, as sentences.
    Repeats of one ``trigger_id`` (at-least-once delivery) count once."""
    document = yaml.safe_load(rules.read_text())
    policy = document.get("policy") or {}
    caps = policy.get("frequency_caps", [{"max": 3, "per": "7d"}]) or []
    family_of = {
        offer_id: (offer or {}).get("family") or offer_id
        for offer_id, offer in (document.get("offers") or {}).items()
    }
    quiet = policy.get("quiet_hours")
    users = Users(events)
    unique = {trigger["trigger_id"]: trigger for trigger in sent}
    per_user: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
    """user -> (time, channel, family) of each trigger sent to them."""
    found: list[str] = []
    for trigger in unique.values():
        user, channel, at = (
            trigger["user_id"],
            trigger["channel"],
            timestamp(trigger["triggered_at"]),
        )
        offer = trigger["offer"]["id"]
        per_user[user].append((at, channel, family_of.get(offer, offer)))
        said = f"{trigger['trigger_id']} to {user} on {channel} at {trigger['triggered_at']}"
        consent = users.value(user, f"consent {channel}", at)
        if channel == "in_app" and consent is False:
            found.append(f"{said}: in-app consent withdrawn")
        if channel in ("push", "email") and consent is not True:
            found.append(f"{said}: no {channel} consent")
        if users.value(user, "opt out", at) is True:
            found.append(f"{said}: opted out of offers")
        snoozed_until = users.value(user, "snooze", at)
        if snoozed_until is not None and at < snoozed_until:
            found.append(f"{said}: all offers snoozed")
        if quiet and channel in ("push", "email"):
            zone = ZoneInfo(users.value(user, "zone", at, "UTC"))
            local = dt.datetime.fromtimestamp(at, zone)
            if in_quiet_hours(local, quiet["from"], quiet["to"]):
                found.append(f"{said}: quiet hours ({local:%H:%M} in {zone.key})")
    for user, times in per_user.items():
        times.sort()
        for cap in caps:
            per, most, only = seconds(cap["per"]), cap["max"], cap.get("channel")
            family = cap.get("family")
            counted = [
                at
                for at, channel, of in times
                if (only is None or channel == only) and (family is None or of == family)
            ]
            for index, at in enumerate(counted):
                window = index + 1 - bisect.bisect_right(counted, at - per)
                if window > most:
                    found.append(
                        f"{user}: {window} triggers{f' of family {family}' if family else ''}"
                        f"{f' on {only}' if only else ''} in the "
                        f"{cap['per']} up to {dt.datetime.fromtimestamp(at, dt.UTC)} "
                        f"(cap {most})"
                    )
    return found


def read_events(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
