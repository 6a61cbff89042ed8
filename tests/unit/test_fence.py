"""The fence around faust's and aiokafka's private names: the pins in pyproject.toml
hold for what is installed, the start check passes on it, and a missing or reshaped
name stops the worker with one line naming it and the supported versions."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from faust.transport.drivers import aiokafka as faust_aiokafka
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from triggerstream.cli import main
from triggerstream.worker import fence

ROOT = Path(__file__).resolve().parents[2]
PINNED = ("faust-streaming", "aiokafka")


def _pins() -> dict[str, SpecifierSet]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(line) for line in project["dependencies"]]
    return {r.name: r.specifier for r in requirements if r.name in PINNED}


@pytest.mark.parametrize("name", PINNED)
def test_the_installed_version_is_in_the_range_pinned_and_tested(name: str) -> None:
    pin = _pins()[name]
    assert any(spec.operator == "<" for spec in pin), f"{name} needs an upper bound: {pin}"
    installed = importlib.metadata.version(name)
    assert pin.contains(installed), (
        f"{name} {installed} is outside the tested range {pin}: test the worker on it "
        "(rebalances, recovery, crashes on both brokers), then widen the pin and "
        "fence.SUPPORTED together"
    )


@pytest.mark.parametrize("name", PINNED)
def test_the_fence_states_the_same_range_as_the_pin(name: str) -> None:
    low, high = fence.SUPPORTED[name]
    dotted = ".".join(map(str, low)), ".".join(map(str, high))
    assert _pins()[name] == SpecifierSet(f">={dotted[0]},<{dotted[1]}")


def test_every_private_name_the_worker_relies_on_exists_in_the_installed_versions() -> None:
    fence.check()


def test_the_fence_lists_every_private_name_used_outside_it() -> None:
    """No module of the worker outside the fence reaches into faust or aiokafka."""
    worker = ROOT / "src" / "triggerstream" / "worker"
    reached = []
    for path in worker.glob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            for name in re.findall(r"(?<!self)(?<!cls)\.(_[a-z]\w*)", code):
                if not name.startswith("__"):
                    reached.append(f"{path.name}:{number}: {name}")
    assert reached == []


def test_a_missing_private_name_stops_the_check_naming_it_and_the_versions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        fence, "PRIVATE", (fence.Private(faust_aiokafka.Consumer, "_drain_batches", ()),)
    )
    with pytest.raises(fence.FrameworkMismatch) as raised:
        fence.check()
    message = str(raised.value)
    assert "faust.transport.drivers.aiokafka.Consumer._drain_batches is missing" in message
    assert "supported faust-streaming >=0.15.3,<0.16, aiokafka >=0.14.0,<0.15" in message
    assert f"faust-streaming {importlib.metadata.version('faust-streaming')}" in message


def test_a_method_whose_parameters_changed_stops_the_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        fence,
        "PRIVATE",
        (fence.Private(faust_aiokafka.Consumer, "_drain_messages", ("fetcher", "batch")),),
    )
    with pytest.raises(fence.FrameworkMismatch, match=r"takes \(fetcher\), not"):
        fence.check()


def test_an_attribute_a_class_no_longer_sets_stops_the_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        fence, "INSTANCE_ATTRIBUTES", {faust_aiokafka.Consumer: ("_unacked_batches",)}
    )
    with pytest.raises(fence.FrameworkMismatch, match=r"no longer sets self._unacked_batches"):
        fence.check()


def test_the_worker_refuses_to_start_in_one_line_before_touching_the_broker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(
        fence, "PRIVATE", (fence.Private(faust_aiokafka.Consumer, "_drain_batches", ()),)
    )
    result = CliRunner().invoke(
        main,
        [
            "worker",
            "--rules",
            str(ROOT / "examples" / "rules.yaml"),
            "--bootstrap",
            "127.0.0.1:1",  # nothing listens: the check comes first
            "--data-dir",
            str(tmp_path / "data"),
        ],
    )
    assert result.exit_code != 0
    errors = [line for line in result.output.splitlines() if line.startswith("triggerstream: ")]
    assert len(errors) == 1, result.output
    assert "_drain_batches is missing" in errors[0]
    assert "Traceback" not in result.output
