"""Loading a rules file and naming every problem in it with its place.

    rules = load_rules(Path("rules.yaml"))      # RulesError lists every problem

``triggerstream rules check FILE`` prints the problems, one a line, as
``FILE:LINE:COLUMN: rules[0].trigger.count.within: bad duration '5x': ...``.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from triggerstream.events import EVENT_TYPES
from triggerstream.rules.families import family_checks
from triggerstream.rules.model import Catalog, Experiment, Offer, Policy, Rule, RulesFile
from triggerstream.rules.state_names import is_state_name, state_names_hint

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One problem in a rules file: where it is and what is wrong."""

    path: Path_
    message: str
    line: int | None = None
    column: int | None = None

    def render(self, file: str) -> str:
        place = f"{file}:{self.line}:{self.column}" if self.line else file
        where = dotted(self.path)
        return f"{place}: {where + ': ' if where else ''}{self.message}"


class RulesError(ValueError):
    """A rules file that cannot be used, with every problem found in it."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems
        lines = [problem.render(file) for problem in problems]
        super().__init__(f"{len(problems)} problem(s) in {file}:\n" + "\n".join(lines))


def dotted(path: Path_) -> str:
    """``("rules", 0, "trigger")`` -> ``rules[0].trigger``."""
    text = ""
    for part in path:
        if isinstance(part, bool):
            part = "on" if part else "off"
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def load_rules(path: Path) -> RulesFile:
    """Read and validate a rules file; :class:`RulesError` names every problem."""
    try:
        data = path.read_bytes()
    except OSError as error:
        reason = error.strerror or str(error)
        raise RulesError(str(path), [Problem((), f"cannot read the file: {reason}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RulesError(str(path), [_not_utf8(data, error)]) from None
    return parse_rules(text, str(path))


def rules_version(text: str) -> str:
    """A rules text's version: the first 12 hex digits of the sha256 of its UTF-8 bytes
    (a file's bytes), the same in file mode, replay and on the rules topic."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _not_utf8(data: bytes, error: UnicodeDecodeError) -> Problem:
    """Where a file stops being UTF-8: a file saved as Latin-1 or UTF-16 by an editor."""
    before = data[: error.start]
    line = before.count(b"\n") + 1
    column = error.start - (before.rfind(b"\n") + 1) + 1
    bad = data[error.start : error.end].hex(" ")
    return Problem(
        (),
        f"not UTF-8 text: byte(s) {bad} at line {line}, column {column}; save the file as UTF-8",
        line,
        column,
    )


def parse_rules(text: str, file: str = "<rules>") -> RulesFile:
    """Validate the text of a rules file; :class:`RulesError` names every problem."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is not None and _expanded_size(root, {}) > MAX_VALUES:
            raise RulesError(
                file,
                [
                    Problem(
                        (),
                        f"the file expands to more than {MAX_VALUES:,} values through its "
                        "aliases (*name); write the repeated parts out or use fewer aliases",
                    )
                ],
            )
        document = yaml.safe_load(text)
    except RecursionError:
        raise RulesError(file, [Problem((), "not valid YAML: nested too deeply")]) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error)
        raise RulesError(
            file,
            [
                Problem(
                    (),
                    f"not valid YAML: {problem}",
                    mark.line + 1 if mark else None,
                    mark.column + 1 if mark else None,
                )
            ],
        ) from None
    if not isinstance(document, dict) or root is None:
        raise RulesError(
            file, [Problem((), "a rules file is a YAML mapping with offers and rules")]
        )
    places = _Places(root)
    problems = [places.locate(path, message) for path, message in _duplicate_keys(root)]
    parts, part_problems = _validate_parts(document)
    problems += [places.locate(path, message) for path, message in part_problems]
    problems += [places.locate(path, message) for path, message in cross_checks(**parts)]
    problems += [places.locate(path, message) for path, message in family_checks(document)]
    if problems:
        raise RulesError(file, _in_file_order(problems))
    return RulesFile.model_validate(document).with_version(rules_version(text))


MAX_VALUES = 100_000
"""A rules file holding more values than this once its aliases are expanded is refused:
a few lines of anchors and aliases can stand for billions of values."""


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values the node stands for with every alias expanded (each node counted
    once per path to it; shared nodes measured once)."""
    size = sizes.get(id(node))
    if size is None:
        size = 1
        if isinstance(node, yaml.MappingNode):
            size += sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            size += sum(_expanded_size(item, sizes) for item in node.value)
        size = sizes[id(node)] = min(size, MAX_VALUES + 1)
    return size


def _validate_parts(document: dict[Any, Any]) -> tuple[dict[str, Any], list[tuple[Path_, str]]]:
    """Validate each section, and each rule and experiment on its own, so that one bad
    rule does not hide the problems of the others."""
    problems: list[tuple[Path_, str]] = _boolean_keys(document)
    known = set(RulesFile.model_fields)
    for key in document:
        if key not in known and not isinstance(key, bool):
            problems.append(((key,), _message({"type": "extra_forbidden", "loc": (key,)})))

    def check(adapter: TypeAdapter[Any], value: Any, path: Path_) -> None:
        try:
            adapter.validate_python(value)
        except ValidationError as error:
            for e in error.errors(include_url=False):
                # Boolean keys (a bare `on`) are reported by _boolean_keys with the fix.
                if e["type"] != "invalid_key":
                    problems.append(((*path, *e["loc"]), _message(e)))

    offers = document.get("offers")
    if not isinstance(offers, dict) or not offers:
        problems.append((("offers",), "required: a mapping of offer ids to offers"))
        offers = {}
    for offer_id, offer in offers.items():
        check(_OFFER, offer, ("offers", offer_id))
    rules = document.get("rules")
    if not isinstance(rules, list) or not rules:
        problems.append((("rules",), "required: a list of rules"))
        rules = []
    for index, rule in enumerate(rules):
        check(_RULE, rule, ("rules", index))
    # Only a missing or null section takes its default: an empty list where a mapping
    # belongs (or 0, "", false) is a problem to name, not a default.
    experiments = document.get("experiments")
    experiments = [] if experiments is None else experiments
    if not isinstance(experiments, list):
        problems.append((("experiments",), "must be a list"))
        experiments = []
    for index, experiment in enumerate(experiments):
        check(_EXPERIMENT, experiment, ("experiments", index))
    for name, adapter in (("policy", _POLICY), ("catalog", _CATALOG)):
        section = document.get(name)
        check(adapter, {} if section is None else section, (name,))
    parts = {"offer_ids": [str(k) for k in offers], "rules": rules, "experiments": experiments}
    return parts, problems


def _boolean_keys(node: Any, path: Path_ = ()) -> list[tuple[Path_, str]]:
    """YAML 1.1 reads a bare `on`, `yes` or `no` key as a boolean: say so, with the fix."""
    problems: list[tuple[Path_, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, bool):
                problems.append(
                    (
                        (*path, key),
                        "a bare `on` (or yes/no) key reads as a boolean in YAML; "
                        "did you mean `type`? (quote it if you meant the word)",
                    )
                )
            problems += _boolean_keys(value, (*path, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            problems += _boolean_keys(item, (*path, index))
    return problems


_OFFER: TypeAdapter[Offer] = TypeAdapter(Offer)
_RULE: TypeAdapter[Rule] = TypeAdapter(Rule)
_EXPERIMENT: TypeAdapter[Experiment] = TypeAdapter(Experiment)
_POLICY: TypeAdapter[Policy] = TypeAdapter(Policy)
_CATALOG: TypeAdapter[Catalog] = TypeAdapter(Catalog)


def _message(error: Any) -> str:
    message = str(error.get("msg", "")).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        key = error["loc"][-1]
        if key is True:
            return "a bare `on` (or yes/no) key reads as a boolean in YAML; did you mean `type`?"
        return f"unknown key `{key}`"
    if error["type"] == "missing":
        return "required"
    given = error.get("input")
    shown = isinstance(given, str | int | float) and not isinstance(given, bool)
    if shown and repr(given) not in message and str(given) not in message:
        message += f" (got {given!r})"
    return message


def _in_file_order(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.line or 0, p.column or 0))


# --- checks across the file ----------------------------------------------------------


def cross_checks(
    offer_ids: list[str], rules: list[Any], experiments: list[Any]
) -> list[tuple[Path_, str]]:
    """Problems no single field shows: references, duplicates, names of things.

    Works on the raw sections, so a rule with another problem is still checked here."""
    problems: list[tuple[Path_, str]] = []
    first_index: dict[str, int] = {}
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict):
            continue
        here: Path_ = ("rules", index)
        rule_id = rule.get("id")
        if isinstance(rule_id, str):
            if rule_id in first_index:
                message = f"duplicate id `{rule_id}` (first at rules[{first_index[rule_id]}])"
                problems.append(((*here, "id"), message))
            first_index.setdefault(rule_id, index)
        offer = rule.get("offer")
        if isinstance(offer, str) and offer not in offer_ids:
            known = ", ".join(offer_ids) or "none"
            problems.append(((*here, "offer"), f"unknown offer `{offer}` (offers: {known})"))
        trigger = rule.get("trigger")
        if isinstance(trigger, dict):
            for kind in ("event", "count", "sum"):
                spec = trigger.get(kind)
                if isinstance(spec, dict) and isinstance(spec.get("type"), str):
                    problems += _event_checks((*here, "trigger", kind), spec)
            sequence = trigger.get("not_followed")
            sides = sequence if isinstance(sequence, dict) else {}
            for step in ("first", "then"):
                spec = sides.get(step)
                if isinstance(spec, dict) and isinstance(spec.get("type"), str):
                    problems += _event_checks((*here, "trigger", "not_followed", step), spec)
        profile = rule.get("profile")
        if isinstance(profile, dict):
            for name in profile:
                if isinstance(name, str) and not is_state_name(name):
                    message = f"unknown state `{name}`; {state_names_hint()}"
                    problems.append(((*here, "profile", name), message))
    problems += _experiment_checks(experiments, set(first_index))
    return problems


def _event_checks(here: Path_, spec: dict[str, Any]) -> list[tuple[Path_, str]]:
    qualified = spec["type"]
    if qualified not in EVENT_TYPES:
        short = qualified.split(".", 1)[0]
        same_topic = [name for name in EVENT_TYPES if name.startswith(f"{short}.")]
        known = same_topic or sorted({name.split(".", 1)[0] for name in EVENT_TYPES})
        what = "types" if same_topic else "topic short names"
        message = f"unknown event type `{qualified}`; known {what}: {', '.join(known)}"
        return [((*here, "type"), message)]
    properties = event_properties(qualified)
    problems: list[tuple[Path_, str]] = []
    where = spec.get("where")
    for name in where if isinstance(where, dict) else ():
        if name not in properties:
            message = f"unknown property `{name}` of {qualified} (it has: {', '.join(properties)})"
            problems.append(((*here, "where", name), message))
    field = spec.get("field")
    if isinstance(field, str):
        numeric = [name for name, kind in properties.items() if kind == "number"]
        if field not in numeric:
            problems.append(
                (
                    (*here, "field"),
                    f"`{field}` is not a numeric property of {qualified}"
                    + (f" (numeric: {', '.join(numeric)})" if numeric else " (it has none)"),
                )
            )
    return problems


@functools.cache
def event_properties(qualified_type: str) -> dict[str, str]:
    """Property names of an event type with ``number`` or ``other`` as their kind."""
    model = EVENT_TYPES[qualified_type].model_fields["properties"].annotation
    schema = model.model_json_schema()  # type: ignore[union-attr]
    kinds: dict[str, str] = {}
    for name, field in schema.get("properties", {}).items():
        types = {field.get("type")} | {option.get("type") for option in field.get("anyOf", [])}
        kinds[name] = "number" if types & {"integer", "number"} else "other"
    return kinds


def _experiment_checks(experiments: list[Any], rule_ids: set[str]) -> list[tuple[Path_, str]]:
    problems: list[tuple[Path_, str]] = []
    seen: set[str] = set()
    for index, experiment in enumerate(experiments):
        if not isinstance(experiment, dict):
            continue
        here: Path_ = ("experiments", index)
        rule = experiment.get("rule")
        if isinstance(rule, str):
            if rule not in rule_ids:
                problems.append(((*here, "rule"), f"unknown rule `{rule}`"))
            elif rule in seen:
                message = f"rule `{rule}` already has an experiment; one per rule"
                problems.append(((*here, "rule"), message))
            seen.add(rule)
        variants = experiment.get("variants")
        if isinstance(variants, dict) and variants:
            weights = [v.get("weight") for v in variants.values() if isinstance(v, dict)]
            numbers = [w for w in weights if isinstance(w, int) and not isinstance(w, bool)]
            if len(numbers) == len(weights):
                total = sum(numbers)
                if total != 100:
                    problems.append(((*here, "variants"), f"weights sum to {total} instead of 100"))
    return problems


# --- places in the YAML --------------------------------------------------------------


class _Places:
    """Finds the line and column of a path in the composed YAML."""

    def __init__(self, root: yaml.Node) -> None:
        self.root = root

    def locate(self, path: Path_, message: str) -> Problem:
        node: yaml.Node = self.root
        for part in path:
            child = _child(node, part)
            if child is None:
                break
            node = child
        mark = node.start_mark
        return Problem(path, message, mark.line + 1, mark.column + 1)


def _child(node: yaml.Node, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == str(part) or (part is True and key.value in _YAML_TRUE):
                return value  # type: ignore[no-any-return]
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part]  # type: ignore[no-any-return]
    return None


_YAML_TRUE = frozenset({"on", "On", "ON", "yes", "Yes", "YES", "true", "True", "TRUE", "y", "Y"})


def _duplicate_keys(node: yaml.Node, path: Path_ = ()) -> list[tuple[Path_, str]]:
    """YAML loaders keep the last of two equal keys silently; a rules file must not."""
    problems: list[tuple[Path_, str]] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if key.value in seen:
                problems.append(((*path, key.value), f"duplicate key `{key.value}`"))
            seen.add(key.value)
            problems += _duplicate_keys(value, (*path, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            problems += _duplicate_keys(item, (*path, index))
    return problems
