"""`triggerstream topics create` against a real broker."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient

from tests.conftest import run_cli
from triggerstream.rules_topic import RULES_TOPIC
from triggerstream.settings import Settings
from triggerstream.topics import load_topics


async def partitions_of(settings: Settings) -> dict[str, int]:
    admin = AIOKafkaAdminClient(**settings.kafka_options())
    await admin.start()
    try:
        names = [n for n in await admin.list_topics() if n.startswith(settings.topic_prefix)]
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    return {t["topic"].removeprefix(settings.topic_prefix): len(t["partitions"]) for t in described}


async def test_topics_create_provisions_every_topic_and_a_second_run_changes_nothing(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    declared = {spec.name: spec.partitions for spec in load_topics()}

    first = run_cli("topics", "create", env=cli_env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("created") == len(declared)
    assert f"{len(declared)} created, 0 already there" in first.stderr
    assert await partitions_of(settings) == declared

    second = run_cli("topics", "create", env=cli_env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("exists, unchanged") == len(declared)
    assert "created" not in second.stdout
    assert f"0 created, {len(declared)} already there" in second.stderr
    assert await partitions_of(settings) == declared


async def test_partitions_flag_sets_every_topic_but_the_rules_topic(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    result = run_cli("topics", "create", "--partitions", "3", env=cli_env)
    assert result.returncode == 0, result.stderr
    partitions = await partitions_of(settings)
    assert partitions.pop(RULES_TOPIC) == 1  # one partition keeps the versions in order
    assert set(partitions.values()) == {3}


async def test_existing_topics_with_another_partition_count_are_reported_not_changed(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    assert run_cli("topics", "create", "--partitions", "2", env=cli_env).returncode == 0
    again = run_cli("topics", "create", env=cli_env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("OTHER PARTITION COUNT") == len(load_topics()) - 1  # not rules
    partitions = await partitions_of(settings)
    assert partitions.pop(RULES_TOPIC) == 1
    assert set(partitions.values()) == {2}
