"""The explain view for people: the user's state, each rule and why, what is pending and
the decisions, printed with rich."""

from __future__ import annotations

from typing import IO, Any


def render(view: dict[str, Any], output: IO[str]) -> None:
    """Print ``view`` (:func:`explain_user`'s document) to ``output``."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    console = Console(file=output, width=max(120, Console().width), highlight=False)
    state = view["state"]
    console.print(
        f"[bold]{escape(view['user_id'])}[/bold] as of {state['now']} ({state['now_is']})"
    )
    console.print(_facts(state), markup=False)

    rules = Table(title="Rules: would each fire now, and why", title_justify="left")
    rules.add_column("rule")
    rules.add_column("fires now")
    rules.add_column("why", overflow="fold")
    for rule in view["rules"]:
        # Text, not markup: details carry what producers sent (a feature named "[b]").
        rules.add_row(rule["rule_id"], "yes" if rule["fires_now"] else "no", Text(rule["detail"]))
    console.print(rules)

    if view["pending"]:
        console.print("[bold]Pending[/bold]")
        for timer in view["pending"]:
            console.print(f"  {timer['due']}  {timer['rule_id']} ({timer['kind']})", markup=False)
    else:
        console.print("Pending: nothing")

    if not view["decisions"]:
        console.print("Decisions: none")
        return
    decisions = Table(title=f"Decisions ({len(view['decisions'])})", title_justify="left")
    for column in ("at", "rule", "outcome", "reason", "channel"):
        decisions.add_column(column, no_wrap=True)
    decisions.add_column("detail", overflow="fold")
    for d in view["decisions"]:
        decisions.add_row(
            d["at"],
            d["rule_id"] or "",
            d["outcome"],
            d["reason"] or "",
            d["channel"] or "",
            Text(d["detail"]),
        )
    console.print(decisions)


def _facts(state: dict[str, Any]) -> str:
    """The state in a few lines: only what is known."""
    profile = {k: v for k, v in state["profile"].items() if v not in (None, [], {}, False, 0)}
    lines = ["profile: " + (", ".join(f"{k} {_value(v)}" for k, v in profile.items()) or "none")]
    consent = state["consent"]
    lines.append(
        "consent: "
        + ", ".join(
            f"{channel} {'given' if c else 'withdrawn' if c is False else _unsaid(channel)}"
            for channel, c in consent.items()
        )
    )
    lines.append("open tickets: " + (", ".join(state["open_tickets"]) or "none"))
    lines.append("owned: " + (", ".join(state["owned"]) or "nothing"))
    quotas = state["quotas"]
    if quotas:
        lines.append(
            "quotas: "
            + ", ".join(
                f"{name} {q['used']:g} of {q['limit']:g} ({int(q['fraction'] * 100)}%)"
                for name, q in quotas.items()
            )
        )
    windows = state["windows"]
    if windows:
        lines.append(
            "windows: "
            + ", ".join(
                f"{rule} {w['events']} in {w['within']}"
                + (f" (sum {w['sum']:g})" if "sum" in w else "")
                for rule, w in windows.items()
            )
        )
    offers = state["offers"]
    if offers["last_triggered"]:
        lines.append(
            "last triggered: "
            + ", ".join(f"{rule} {at}" for rule, at in offers["last_triggered"].items())
        )
    for name, label in (("dismissed", "dismissed"), ("snoozed_until", "snoozed until")):
        if offers[name]:
            lines.append(f"{label}: " + ", ".join(f"{o} {at}" for o, at in offers[name].items()))
    return "\n".join(lines)


def _unsaid(channel: str) -> str:
    # In-app needs no consent, only none withdrawn; push and email need it given.
    return "not withdrawn" if channel == "in_app" else "never given"


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)
