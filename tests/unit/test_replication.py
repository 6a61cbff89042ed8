"""Replication settings for a cluster (issue 24): `topics create` and the worker's
changelogs get the replication factor and min ISR of the settings, writes wait for
every in-sync replica, and a single copy on a cluster of three or more is warned about."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from triggerstream.settings import Settings
from triggerstream.topics import load_topics, thin_replication
from triggerstream.worker.app import build_app
from triggerstream.worker.preflight import Layout
from triggerstream.worker.store import StateStore


@pytest.mark.parametrize(
    ("brokers", "replicas", "warned"),
    [(1, 1, False), (2, 1, False), (3, 1, True), (5, 1, True), (3, 2, False), (3, 3, False)],
)
def test_one_copy_on_three_brokers_or_more_is_warned_about(
    brokers: int, replicas: int, warned: bool
) -> None:
    warning = thin_replication(brokers, replicas)
    assert (warning is not None) == warned
    if warning:
        assert "\n" not in warning
        assert f"cluster of {brokers} brokers" in warning
        assert "TRIGGERSTREAM_REPLICATION_FACTOR=3" in warning


def test_min_isr_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIGGERSTREAM_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("TRIGGERSTREAM_MIN_INSYNC_REPLICAS", "2")
    settings = Settings()
    assert (settings.replication_factor, settings.min_insync_replicas) == (3, 2)
    monkeypatch.delenv("TRIGGERSTREAM_MIN_INSYNC_REPLICAS")
    assert Settings().min_insync_replicas is None  # the broker's


@pytest.mark.parametrize(
    ("replicas", "min_isr", "refused"),
    [
        (3, 2, None),
        (-1, 2, None),  # the broker's default: the broker judges
        (3, 3, None),
        (2, 3, "TRIGGERSTREAM_MIN_INSYNC_REPLICAS=3 is more than"),
        (0, None, "TRIGGERSTREAM_REPLICATION_FACTOR=0"),
        (-2, None, "TRIGGERSTREAM_REPLICATION_FACTOR=-2"),
        (3, 0, "min_insync_replicas"),
    ],
)
def test_impossible_replication_is_refused_naming_the_setting(
    replicas: int, min_isr: int | None, refused: str | None
) -> None:
    if refused is None:
        Settings(replication_factor=replicas, min_insync_replicas=min_isr)
    else:
        with pytest.raises(ValidationError, match=refused):
            Settings(replication_factor=replicas, min_insync_replicas=min_isr)


def test_topics_get_the_min_isr_only_when_it_is_set() -> None:
    for spec in load_topics():
        assert spec.configs(2)["min.insync.replicas"] == "2"
        assert "min.insync.replicas" not in spec.configs()


def test_the_worker_writes_with_acks_all_and_its_changelogs_get_the_replication() -> None:
    settings = Settings(replication_factor=3, min_insync_replicas=2)
    app = build_app(settings, partitions=8, replicas=3)
    assert app.conf.producer_acks == -1  # acks=all: every in-sync replica has the write
    store = StateStore(app, settings, Layout(partitions=8, replicas=3, embedded=False))
    for table in (store.users, store.copurchase_table, store.ids):
        changelog = table.changelog_topic
        # faust declares a changelog with the app's replication factor unless told
        assert (changelog.replicas or app.conf.topic_replication_factor) == 3, table.name
        assert changelog.config is not None
        assert changelog.config["min.insync.replicas"] == "2", table.name
    assert (store.ids.changelog_topic.config or {})["cleanup.policy"] == "compact,delete"


def test_without_a_min_isr_the_changelogs_take_the_brokers() -> None:
    settings = Settings()
    app = build_app(settings, partitions=8, replicas=1)
    store = StateStore(app, settings, Layout(partitions=8, replicas=1, embedded=False))
    assert "min.insync.replicas" not in (store.users.changelog_topic.config or {})
