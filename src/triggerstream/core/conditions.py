"""``where`` and ``profile`` conditions, compiled once into predicates.

A condition is a value (equality; against a list-valued state, "contains"), a list (any
of its values), or an operator object ``{eq, ne, in, not_in, gt, gte, lt, lte, exists}``
whose every operator must hold. A missing value (None) equals nothing but null, is in no
list, and fails every comparison.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from triggerstream.rules.model import Operators

Predicate = Callable[[Any], bool]


def compile_condition(condition: Any, is_time: bool = False) -> Predicate:
    """A predicate on one value. ``is_time``: the value is POSIX seconds and the
    condition's operands are RFC 3339 timestamps."""
    if isinstance(condition, Operators):
        return _all_of(_operators(condition, is_time))
    if isinstance(condition, list):
        options = [_operand(v, is_time) for v in condition]
        return lambda value: _any_in(value, options)
    expected = _operand(condition, is_time)
    return lambda value: _equals(value, expected)


def _operators(ops: Operators, is_time: bool) -> list[Predicate]:
    given = ops.model_fields_set
    checks: list[Predicate] = []
    if "eq" in given:
        eq = _operand(ops.eq, is_time)
        checks.append(lambda v: _equals(v, eq))
    if "ne" in given:
        ne = _operand(ops.ne, is_time)
        checks.append(lambda v: not _equals(v, ne))
    if ops.in_ is not None:
        options = [_operand(x, is_time) for x in ops.in_]
        checks.append(lambda v: _any_in(v, options))
    if ops.not_in is not None:
        excluded = [_operand(x, is_time) for x in ops.not_in]
        checks.append(lambda v: not _any_in(v, excluded))
    for name, compare in (
        ("gt", lambda a, b: a > b),
        ("gte", lambda a, b: a >= b),
        ("lt", lambda a, b: a < b),
        ("lte", lambda a, b: a <= b),
    ):
        if getattr(ops, name) is not None:
            bound = _operand(getattr(ops, name), is_time)
            checks.append(_comparison(compare, bound))
    if ops.exists is not None:
        wanted = ops.exists
        checks.append(lambda v: (v is not None and v != []) == wanted)
    return checks


def _comparison(compare: Callable[[Any, Any], bool], bound: Any) -> Predicate:
    def check(value: Any) -> bool:
        if value is None or isinstance(value, (bool, list)):
            return False
        try:
            return bool(compare(value, bound))
        except TypeError:  # a string against a number: not comparable, not a match
            return False

    return check


def _all_of(checks: list[Predicate]) -> Predicate:
    if len(checks) == 1:
        return checks[0]
    return lambda value: all(check(value) for check in checks)


def _operand(value: Any, is_time: bool) -> Any:
    if is_time and isinstance(value, str):
        parsed = dt.datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.timestamp()
    return value


def _same(a: Any, b: Any) -> bool:
    # YAML `true` must not equal the number 1, nor `1` equal True.
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _equals(value: Any, expected: Any) -> bool:
    if isinstance(value, list):
        return any(_same(item, expected) for item in value)
    return _same(value, expected)


def _any_in(value: Any, options: list[Any]) -> bool:
    if isinstance(value, list):
        return any(_same(item, option) for item in value for option in options)
    return any(_same(value, option) for option in options)
