"""Kafka over SASL/SCRAM, over TLS, and over both, configured through the settings
alone, against an Apache Kafka broker with those listeners; and secrets kept out of
every log, metric and error message.

The broker's certificate is made here with the JDK's keytool; its users are stored as
SCRAM credentials when its storage is formatted.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.engine_support import event, rule, rules_file
from tests.worker_support import (
    WorkerProcess,
    create_topics,
    produce,
    wait_for_records,
    write_lines,
)
from triggerstream.records import DECISIONS_TOPIC
from triggerstream.settings import Settings
from triggerstream.testing.apache_kafka import ApacheKafkaBroker, _java_executable, free_ports

USER = "triggerstream"
PASSWORD = f"pw-{uuid.uuid4().hex}"
"""The SCRAM password: a string no log, metric or error may hold."""
STORE_PASSWORD = f"ks-{uuid.uuid4().hex}"


@dataclass
class SecuredBroker:
    broker: ApacheKafkaBroker
    listeners: dict[str, int]
    """security protocol -> port."""
    ca: Path


def certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: the broker's PKCS12 keystore and the
    PEM file clients trust."""
    keytool = str(Path(_java_executable()).with_name("keytool"))
    keystore, ca = folder / "broker.p12", folder / "ca.pem"
    store = ["-keystore", str(keystore), "-storepass", STORE_PASSWORD]
    subprocess.run(
        [keytool, "-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048"]
        + ["-validity", "2", "-dname", "CN=localhost", "-ext", "SAN=ip:127.0.0.1,dns:localhost"]
        + ["-storetype", "PKCS12", "-keypass", STORE_PASSWORD, *store],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [keytool, "-exportcert", "-alias", "broker", "-rfc", "-file", str(ca), *store],
        check=True,
        capture_output=True,
    )
    return keystore, ca


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    folder = tmp_path_factory.mktemp("secured")
    keystore, ca = certificate(folder)
    plain, controller, scram, tls, scram_tls = free_ports(5)
    names = {"SCRAM": scram, "TLS": tls, "SCRAMTLS": scram_tls}
    listeners = ",".join(
        [f"PLAINTEXT://127.0.0.1:{plain}", f"CONTROLLER://127.0.0.1:{controller}"]
        + [f"{name}://127.0.0.1:{port}" for name, port in names.items()]
    )
    properties = {
        "listeners": listeners,
        "advertised.listeners": listeners,
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
        "SCRAM:SASL_PLAINTEXT,TLS:SSL,SCRAMTLS:SASL_SSL",
        "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512",
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(keystore),
        "ssl.keystore.password": STORE_PASSWORD,
        "ssl.key.password": STORE_PASSWORD,
    }
    for name in ("scram", "scramtls"):
        for mechanism in ("scram-sha-256", "scram-sha-512"):
            properties[f"listener.name.{name}.{mechanism}.sasl.jaas.config"] = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            )
    broker = ApacheKafkaBroker(
        port=plain,
        controller_port=controller,
        extra_properties=properties,
        scram_users={USER: PASSWORD},
    ).start()
    try:
        yield SecuredBroker(
            broker, {"SASL_PLAINTEXT": scram, "SSL": tls, "SASL_SSL": scram_tls}, ca
        )
    finally:
        broker.stop()


def environment(secured: SecuredBroker, protocol: str, password: str = PASSWORD) -> dict[str, str]:
    """What a user sets to reach the broker over ``protocol``: only TRIGGERSTREAM_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERSTREAM_")}
    env |= {
        "TRIGGERSTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{secured.listeners[protocol]}",
        "TRIGGERSTREAM_TOPIC_PREFIX": f"s{uuid.uuid4().hex[:8]}.",
        "TRIGGERSTREAM_SECURITY_PROTOCOL": protocol,
        "TRIGGERSTREAM_REQUEST_TIMEOUT": "15",
    }
    if protocol.startswith("SASL"):
        env |= {
            "TRIGGERSTREAM_SASL_MECHANISM": "SCRAM-SHA-512"
            if protocol == "SASL_SSL"
            else "SCRAM-SHA-256",
            "TRIGGERSTREAM_SASL_USERNAME": USER,
            "TRIGGERSTREAM_SASL_PASSWORD": password,
        }
    if protocol.endswith("SSL"):
        env["TRIGGERSTREAM_SSL_CAFILE"] = str(secured.ca)
    return env


def settings_of(env: dict[str, str]) -> Settings:
    """The settings the CLI reads from ``env`` (for the test's own reading)."""
    return Settings.model_validate(
        {
            key.removeprefix("TRIGGERSTREAM_").lower(): value
            for key, value in env.items()
            if key.startswith("TRIGGERSTREAM_")
        }
    )


@pytest.mark.apache_only
@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SSL", "SASL_SSL"])
def test_a_worker_runs_over_a_secured_connection_and_never_shows_the_password(
    secured: SecuredBroker, protocol: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    env = environment(secured, protocol)
    create_topics(env)
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_file([rule("any", channels=["in_app"])]))
    worker = WorkerProcess(env, rules, tmp_path).start()
    workers.append(worker)
    worker.wait_ready()
    now = dt.datetime.now(dt.UTC)
    produce(
        env,
        write_lines(
            tmp_path / "events.jsonl",
            [
                event("usage.session_started", "u", now),
                event("usage.feature_used", "u", now, feature="export"),
            ],
        ),
    )
    (decision,) = wait_for_records(settings_of(env), DECISIONS_TOPIC, 1)
    assert (decision["user_id"], decision["outcome"]) == ("u", "emitted")
    metrics_text = worker.metrics_text()
    assert worker.stop() == 0, worker.log()[-3000:]
    for text in (worker.log(), metrics_text):
        assert PASSWORD not in text
        assert STORE_PASSWORD not in text
    assert PASSWORD not in secured.broker.log_path.read_text(errors="replace")


@pytest.mark.apache_only
def test_a_wrong_password_is_a_clear_error_that_does_not_show_it(
    secured: SecuredBroker, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    env = environment(secured, "SASL_PLAINTEXT", wrong)
    result = run_cli("topics", "create", env=env)
    assert result.returncode != 0
    assert "refused the credentials of user 'triggerstream'" in result.stderr, result.stderr
    assert wrong not in result.stdout + result.stderr

    worker = WorkerProcess(env, Path("examples/rules.yaml").resolve(), tmp_path).start()
    workers.append(worker)
    assert worker.process is not None
    status = worker.process.wait(120)
    assert status != 0
    assert "refused the credentials" in worker.log(), worker.log()[-3000:]
    assert wrong not in worker.log()


@pytest.mark.apache_only
def test_a_broker_certificate_not_trusted_is_a_clear_error(secured: SecuredBroker) -> None:
    env = environment(secured, "SSL")
    del env["TRIGGERSTREAM_SSL_CAFILE"]  # the system's CAs do not know it
    result = run_cli("topics", "create", env=env)
    assert result.returncode != 0
    assert "certificate" in (result.stdout + result.stderr).lower(), result.stderr
