"""Fixtures of the reliability suite: those of the worker tests."""

from tests.integration.conftest import workers

__all__ = ["workers"]
