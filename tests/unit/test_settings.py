"""Settings come from TRIGGERSTREAM_* once, are frozen, and never show a secret."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from triggerstream.settings import Settings


def test_defaults_follow_the_design(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("TRIGGERSTREAM_"):
            monkeypatch.delenv(name)
    settings = Settings()
    assert settings.kafka_bootstrap == "localhost:9092"
    assert settings.topic_prefix == ""
    assert settings.processing_guarantee == "at_least_once"
    assert settings.security_protocol == "PLAINTEXT"
    assert settings.topic("usage-events") == "usage-events"


def test_environment_is_read_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIGGERSTREAM_KAFKA_BOOTSTRAP", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("TRIGGERSTREAM_TOPIC_PREFIX", "prod.")
    monkeypatch.setenv("TRIGGERSTREAM_PARTITIONS", "12")
    monkeypatch.setenv("TRIGGERSTREAM_PROCESSING_GUARANTEE", "exactly_once")
    settings = Settings()
    assert settings.kafka_options()["bootstrap_servers"] == "kafka-1:9092,kafka-2:9092"
    assert settings.topic("offer-decisions") == "prod.offer-decisions"
    assert settings.partitions == 12
    assert settings.processing_guarantee == "exactly_once"


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.topic_prefix = "x"  # type: ignore[misc]


def test_sasl_without_credentials_is_refused_with_the_names_to_set() -> None:
    with pytest.raises(ValidationError, match="TRIGGERSTREAM_SASL_USERNAME"):
        Settings(security_protocol="SASL_PLAINTEXT")


def test_secrets_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIGGERSTREAM_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("TRIGGERSTREAM_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("TRIGGERSTREAM_SASL_USERNAME", "triggerstream")
    monkeypatch.setenv("TRIGGERSTREAM_SASL_PASSWORD", "hunter2-very-secret")
    settings = Settings()
    for shown in (repr(settings), str(settings), str(settings.describe())):
        assert "hunter2-very-secret" not in shown
    assert settings.describe()["sasl_password"] == "(set)"
    assert settings.kafka_options()["sasl_plain_password"] == "hunter2-very-secret"
    assert settings.kafka_options()["sasl_mechanism"] == "SCRAM-SHA-512"


def test_a_bad_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIGGERSTREAM_PROCESSING_GUARANTEE", "at_most_once")
    with pytest.raises(ValidationError, match="processing_guarantee"):
        Settings()
