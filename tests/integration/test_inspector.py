"""The worker's inspector on a real broker (docs/contract.md section 16): a user the
worker processed, as JSON at ``/users/{user_id}`` and as a person reads it on the page
at ``/`` in a real headless Chromium (Debian's, driven by Selenium and its
chromedriver). The page's screenshot is the README's, docs/inspector.png."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, RunningBroker
from tests.scenarios import RULES, scenario_events
from tests.worker_support import (
    WorkerProcess,
    create_topics,
    produce,
    read_topic,
    shifted,
    write_lines,
)
from triggerstream.records import DECISIONS_TOPIC
from triggerstream.settings import Settings
from triggerstream.topics import input_partitions

# As the worker's parity test: 90 days back, the scenarios' timers are all due.
BACK = dt.timedelta(days=-90)
USER = "acme"
"""Reaches 80%, then 95% of its storage three days later: two offers, both kept."""
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL = "apt-get update && apt-get install -y --no-install-recommends chromium chromium-driver"
# This machine has no network: without these, Chromium waits on refused connections.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1200,900",
)
SCREENSHOT = ROOT / "docs" / "inspector.png"


class Inspected:
    """A worker that has processed the scenarios, and the decisions it made of USER."""

    def __init__(self, worker: WorkerProcess, decisions: list[dict[str, Any]]) -> None:
        self.worker = worker
        self.decisions = decisions
        self.url = f"http://127.0.0.1:{worker.web_port}"

    def get(self, path: str) -> tuple[int, dict[str, Any], Any]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as answer:
                return answer.status, json.loads(answer.read()), answer.headers
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read()), error.headers


@pytest.fixture(scope="module")
def inspected(
    kafka_broker: RunningBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Inspected]:
    folder = tmp_path_factory.mktemp("inspector")
    settings = Settings(
        kafka_bootstrap=kafka_broker.bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        request_timeout=20,
    )
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith("TRIGGERSTREAM_") or k == "TRIGGERSTREAM_PURE"
        },
        "TRIGGERSTREAM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TRIGGERSTREAM_TOPIC_PREFIX": settings.topic_prefix,
    }
    events = write_lines(folder / "events.jsonl", (shifted(e, BACK) for e in scenario_events()))
    create_topics(env)
    produce(env, events)
    worker = WorkerProcess(env, RULES, folder).start()
    try:
        worker.wait_ready()
        yield Inspected(worker, wait_for_decisions(settings, worker, 2))
    finally:
        worker.ensure_stopped()


def wait_for_decisions(
    settings: Settings, worker: WorkerProcess, count: int, timeout: float = 90
) -> list[dict[str, Any]]:
    """USER's decisions on the decisions topic, once there are ``count``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [d for d in read_topic(settings, DECISIONS_TOPIC) if d["user_id"] == USER]
        if len(found) >= count:
            return sorted(found, key=lambda d: d["at"])
        time.sleep(0.5)
    raise AssertionError(f"{USER}: no {count} decisions in {timeout}s:\n{worker.log()[-3000:]}")


def stored_view(inspected: Inspected, timeout: float = 30) -> dict[str, Any]:
    """USER's view once the state holding both decisions is stored (the decisions are
    sent before the batch stores the state)."""
    deadline = time.monotonic() + timeout
    while True:
        status, view, _ = inspected.get(f"/users/{USER}")
        if (status == 200 and len(view["decisions"]) >= 2) or time.monotonic() > deadline:
            return view
        time.sleep(0.2)


def test_an_owned_user_is_explained_with_the_decisions_the_state_keeps(
    inspected: Inspected,
) -> None:
    view = stored_view(inspected)
    assert {"user_id", "state", "rules", "pending", "decisions"} <= set(view)
    assert view["user_id"] == USER
    assert view["state"]["now_is"] == "the worker's clock"
    now = dt.datetime.fromisoformat(view["state"]["now"])
    assert abs((now - dt.datetime.now(dt.UTC)).total_seconds()) < 60
    assert view["state"]["quotas"]["storage_gb"]["used"] == 962
    rules = {rule["rule_id"]: rule for rule in view["rules"]}
    assert "storage_gb" in rules["storage-95"]["detail"]
    # The offer history: the decisions the worker made, as the state keeps them.
    made = [(d["decision_id"], d["rule_id"], d["outcome"], d["channel"], d["at"]) for d in
            inspected.decisions]  # fmt: skip
    kept = [(d["decision_id"], d["rule_id"], d["outcome"], d["channel"], d["at"]) for d in
            view["decisions"]]  # fmt: skip
    assert kept == made
    assert "attribution" in view["decisions_are"]


def test_a_user_with_no_state_is_404_naming_the_partition(inspected: Inspected) -> None:
    status, body, headers = inspected.get("/users/nobody-at-all")
    assert status == 404
    assert body["error"] == "no_state"
    assert isinstance(body["partition"], int)
    assert headers["Cache-Control"] == "no-store"
    status, ready, _ = inspected.get("/readyz")
    assert body["partition"] in ready["partitions"]


def test_the_inspector_is_the_one_way_to_read_a_user_over_http(inspected: Inspected) -> None:
    """faust's own /table and /router endpoints, which would read any table's key
    outside the batches, are off."""
    for path in ("/table/", f"/table/users/{USER}/", f"/router/users/{USER}/"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(inspected.url + path, timeout=10)
        assert refused.value.code == 404, path


def test_a_user_on_another_workers_partition_is_404_naming_it(
    cli_env: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """Two workers share the partitions: the one without USER's names the partition,
    the other owns it (and, with no event read, keeps no state of USER)."""
    create_topics(cli_env)
    pair = [WorkerProcess(cli_env, RULES, tmp_path, name).start() for name in ("w1", "w2")]
    workers += pair
    for worker in pair:
        worker.wait_ready()
    owned = wait_for_shared(pair)
    answers = {}
    for worker, partitions in zip(pair, owned, strict=True):
        status, body, _ = Inspected(worker, []).get(f"/users/{USER}")
        answers[body["error"]] = (status, body, partitions)
    status, body, partitions = answers["not_owned"]
    assert status == 404
    assert body["partition"] not in partitions
    assert body["partitions_owned"] == partitions
    assert f"partition {body['partition']}" in body["detail"]
    status, other, partitions = answers["no_state"]
    assert status == 404
    assert other["partition"] == body["partition"]
    assert other["partition"] in partitions


def wait_for_shared(pair: list[WorkerProcess], timeout: float = 90) -> list[list[int]]:
    """The partitions each worker owns, once both are ready and share them all."""
    deadline = time.monotonic() + timeout
    owned: list[list[int]] = []
    while time.monotonic() < deadline:
        owned = []
        for worker in pair:
            status, body, _ = Inspected(worker, []).get("/readyz")
            owned.append(body.get("partitions", []) if status == 200 else [])
        if all(owned) and sorted(owned[0] + owned[1]) == list(range(input_partitions())):
            return owned
        time.sleep(0.5)
    raise AssertionError(f"the workers did not share the partitions: {owned}")


def test_a_person_reads_a_user_on_the_page_in_chromium(inspected: Inspected) -> None:
    stored_view(inspected)
    browser = chromium()
    try:
        browser.get(inspected.url + "/")
        assert browser.title == "triggerstream inspector"
        field = browser.find_element("id", "user-id")
        field.send_keys(USER)
        browser.find_element("css selector", "button[type=submit]").click()
        wait_until(lambda: browser.find_element("id", "view").is_displayed())
        rules = browser.find_element("id", "rules").text
        assert "storage-95" in rules
        assert "storage_gb" in rules
        history = browser.find_element("id", "history").text
        assert "storage-80" in history
        assert "emitted" in history
        assert "in_app" in history
        state = browser.find_element("id", "state").text
        assert "storage_gb" in state
        assert "962 of 1000" in state
        message = browser.find_element("id", "message").text
        assert f"User {USER}" in message
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1200, int(height) + 160)
        SCREENSHOT.write_bytes(browser.get_screenshot_as_png())
        # A user the worker keeps nothing of: the page says so.
        field.clear()
        field.send_keys("nobody-at-all")
        browser.find_element("css selector", "button[type=submit]").click()
        wait_until(lambda: "keeps no state" in browser.find_element("id", "message").text)
        assert not browser.find_element("id", "view").is_displayed()
    finally:
        browser.quit()


def chromium() -> Any:
    """Debian's Chromium, headless, through its chromedriver: never a browser of
    Selenium's own (this machine downloads nothing)."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: install Chromium with `{INSTALL}`")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def wait_until(done: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError("the page did not show it in time")
        time.sleep(0.1)
