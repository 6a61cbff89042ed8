"""The envelope every input event shares, its time, and the base of every ``properties``.

Every message on an input topic is one JSON object, the envelope
``{event_id, user_id, type, occurred_at, properties}``; each event type is a subclass
whose ``properties`` are typed. Unknown fields are ignored, so producers may add fields.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, Self, TypeVar, overload

from pydantic import BaseModel, ConfigDict

from triggerstream.events.fields import Name, Timestamp

T = TypeVar("T")


def empty() -> Any:
    # docs/contract.md section 4: `properties` defaults to {}; validated like any value (the
    # envelope validates defaults), the type's own model then says what is required.
    return {}


class Properties(BaseModel):
    """Base of every ``properties`` object: unknown fields ignored, values immutable.

    No float is infinite: a number too large for a double (``1e400``) reads as infinity,
    which would then sit in a user's state and break every comparison with it."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)


# The properties of the types that have none (session_ended, erasure_requested).
class EmptyProperties(Properties):
    pass


class _once(Generic[T]):
    """A property computed on first use and kept in the instance: functools'
    cached_property without its lock (Python 3.11 takes one at every read)."""

    def __init__(self, compute: Callable[[Any], T]) -> None:
        self.compute = compute
        self.name = compute.__name__
        self.__doc__ = compute.__doc__

    @overload
    def __get__(self, instance: None, owner: type) -> _once[T]: ...
    @overload
    def __get__(self, instance: object, owner: type) -> T: ...
    def __get__(self, instance: object, owner: type) -> T | _once[T]:
        if instance is None:
            return self
        value = self.compute(instance)
        instance.__dict__[self.name] = value  # later reads find it before the descriptor
        return value


class Envelope(BaseModel):
    """Fields every input event carries. Subclasses add ``type`` and ``properties``."""

    model_config = ConfigDict(
        extra="ignore", frozen=True, validate_default=True, ignored_types=(_once,)
    )

    topic: ClassVar[str]
    """The input topic (without prefix) that carries this type."""
    short_topic: ClassVar[str]
    """The topic's short name in rules: usage, purchase, support, profile, feedback."""
    qualified_type: ClassVar[str]
    """The type as rules name it: ``<short topic>.<type>``, e.g. ``usage.feature_used``."""

    event_id: Name
    user_id: Name
    occurred_at: Timestamp

    @_once
    def at(self) -> float:
        """``occurred_at`` as POSIX seconds, the time the core works in (computed once)."""
        return self.occurred_at.timestamp()

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        copied = super().model_copy(update=update, deep=deep)
        copied.__dict__.pop("at", None)  # computed again from the copy's occurred_at
        return copied

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        field = cls.model_fields.get("type")
        if field is not None:
            cls.qualified_type = f"{cls.short_topic}.{field.default}"
