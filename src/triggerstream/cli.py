"""The ``triggerstream`` command line (DESIGN.md section 9).

Every command reads its settings once, from ``TRIGGERSTREAM_*`` and its flags (a flag
wins). Problems a user can fix are one line on stderr with the fix, and exit status 2
for unusable settings, arguments or an unreachable broker.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import errno
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click
import orjson
import pydantic_core
from pydantic import ValidationError

from triggerstream import collector, compiled, kafka
from triggerstream.events import (
    BOM,
    INPUT_TOPICS,
    MAX_EVENT_BYTES,
    InvalidEvent,
    decode_event,
    decode_line,
    refuse_future,
)
from triggerstream.settings import Settings
from triggerstream.topics import REPARTITION_TOPIC, TIMER_TICKS_TOPIC, load_topics

if TYPE_CHECKING:
    from triggerstream.report import Report
    from triggerstream.rules.load import RulesError

F = TypeVar("F", bound=Callable[..., Any])
OUTPUT = click.Path(dir_okay=False, allow_dash=True, path_type=Path)
"""A file a command writes ('-': stdout), checked with :func:`writable` before use."""
T = TypeVar("T")


def fail(message: str, status: int = 2) -> None:
    """One line on stderr, then exit: for problems the user can fix."""
    click.echo(f"triggerstream: {message}", err=True)
    sys.exit(status)


def build_settings(**flags: Any) -> Settings:
    """Settings from the environment, with the flags that were given on top."""
    overrides = {name: value for name, value in flags.items() if value is not None}
    try:
        return Settings(**overrides)
    except ValidationError as error:
        problems = "; ".join(
            f"TRIGGERSTREAM_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            if e["loc"]
            else e["msg"].removeprefix("Value error, ")
            for e in error.errors(include_url=False)
        )
        fail(f"invalid settings: {problems}")
        raise AssertionError("unreachable") from None


def kafka_flags(command: F) -> F:
    """The flags every command that talks to Kafka takes."""
    command = click.option(
        "--topic-prefix",
        default=None,
        help="Prepended to every topic name [env TRIGGERSTREAM_TOPIC_PREFIX].",
    )(command)
    return click.option(
        "--bootstrap",
        "kafka_bootstrap",
        default=None,
        metavar="HOST:PORT",
        help="Kafka bootstrap servers [env TRIGGERSTREAM_KAFKA_BOOTSTRAP, default localhost:9092].",
    )(command)


def writable(path: Path, flag: str) -> None:
    """Fail now, before anything runs or is written, when ``path`` cannot be written
    as a file: a folder, or in a folder that does not exist or is not writable."""
    if str(path) == "-":
        return
    if path.is_dir():
        fail(f"{flag} {path}: is a folder; give a file name")
    folder = path.parent
    if not folder.is_dir():
        missing = "is not a folder" if folder.exists() else "does not exist"
        fail(f"{flag} {path}: the folder {folder} {missing}")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        fail(f"{flag} {path}: not writable")


def unusable_rules(path: Path, error: RulesError) -> str:
    """One line for a rules file that cannot be used: the first problem, and how to
    see them all."""
    return (
        f"{path} has {len(error.problems)} problem(s), first: "
        f"{error.problems[0].render(str(path))}; "
        f"see all with `triggerstream rules check {path}`"
    )


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; Kafka problems become one line and exit status 2."""
    try:
        return asyncio.run(coroutine)
    except kafka.KafkaUnavailable as error:
        fail(str(error))
        raise AssertionError("unreachable") from None


class Commands(click.Group):
    """The command group: a file or folder argument click refuses (missing, a folder
    where a file belongs, unwritable) is one line and exit status 2, like every other
    problem a user can fix, instead of click's usage block."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.BadParameter as error:
            param = error.param
            if param is None or not isinstance(param.type, click.Path | click.File):
                raise
            hint = param.get_error_hint(error.ctx or ctx).strip("'")
            fail(f"{hint}: {error.message}")
        except OSError as error:
            if error.errno == errno.EPIPE:
                raise  # the reader went away (| head): click ends quietly
            # The system refused a file while the command ran (a full disk, a file
            # removed meanwhile): one line, not a traceback.
            where = f"{error.filename}: " if error.filename else ""
            fail(f"{where}{error.strerror or error}", status=1)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    package_name="triggerstream",
    # Which build of the core runs: compiled (mypyc) or pure Python, and why.
    message=f"%(prog)s %(version)s, core: {compiled.BUILD}",
)
def main() -> None:
    """triggerstream: behavioral offer triggers from Kafka event streams.

    Product services publish usage, purchase, support and profile events; triggerstream
    keeps per-user state, evaluates rules, applies a suppression policy, picks a channel
    and publishes offer triggers for in-app, push and email services.
    """
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # aiokafka logs each failed connection attempt at ERROR; the commands report the
    # outcome themselves in one line with the fix, so its retries are only noise here.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


# --- broker --------------------------------------------------------------------------


@main.command()
@click.option("--port", default=9092, show_default=True, help="Port on 127.0.0.1 to listen on.")
def broker(port: int) -> None:
    """Run an embedded Kafka-protocol broker (Tansu) for development and tests.

    It listens on 127.0.0.1 only and keeps every record IN MEMORY ONLY: everything is
    lost when it stops. Retention and cleanup policies are ignored. Runs in the
    foreground until Ctrl-C. For anything that must survive a restart, use Apache Kafka.
    """
    from triggerstream.broker import BrokerNotAvailable, EmbeddedBroker

    if not _port_is_free(port):
        fail(f"port {port} on 127.0.0.1 is in use; pick another with --port")
    embedded = EmbeddedBroker(port)
    try:
        embedded.start()
    except BrokerNotAvailable as error:
        fail(str(error))
    # SIGTERM stops it like Ctrl-C; SIGINT is set explicitly because a shell starts
    # background jobs with it ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    click.echo(
        f"embedded broker (Tansu, in memory only) ready on {embedded.bootstrap} "
        f"in {embedded.start_seconds:.2f}s; log: {embedded.log_path}; Ctrl-C stops it",
        err=True,
    )
    try:
        status = embedded.wait()
    except KeyboardInterrupt:
        embedded.stop()
        status = 0
    click.echo("embedded broker stopped; its data is gone", err=True)
    sys.exit(status if status > 0 else 0)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _port_is_free(port: int) -> bool:
    """Whether a server could listen on the port now (as servers do, with SO_REUSEADDR:
    connections of a server just stopped, in TIME_WAIT, do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# --- topics --------------------------------------------------------------------------


@main.group()
def topics() -> None:
    """Provision the topics of topics/topics.yaml."""


@topics.command("create")
@kafka_flags
@click.option(
    "--partitions",
    type=click.IntRange(1, 10_000),
    default=None,
    help="Partitions of every topic [env TRIGGERSTREAM_PARTITIONS, default from topics.yaml].",
)
def topics_create(**flags: Any) -> None:
    """Create every topic that does not exist yet (idempotent).

    Existing topics are left as they are; a partition count that differs from the
    declared one is reported, and unequal input topics fail the command (the worker
    needs them equal).
    """
    settings = build_settings(**flags)
    outcomes = run(kafka.create_topics(settings, load_topics()))
    for outcome in outcomes:
        note = {
            "created": "created",
            "exists": "exists, unchanged",
            "exists-with-other-partitions": "EXISTS WITH OTHER PARTITION COUNT, unchanged",
        }[outcome.action]
        click.echo(f"{outcome.name:<40} {outcome.partitions:>5} partitions  {note}")
    created = sum(o.action == "created" for o in outcomes)
    click.echo(
        f"{created} created, {len(outcomes) - created} already there, on "
        f"{settings.kafka_bootstrap}",
        err=True,
    )
    co_partitioned = {
        settings.topic(t) for t in (*INPUT_TOPICS, TIMER_TICKS_TOPIC, REPARTITION_TOPIC)
    }
    inputs = {o.partitions for o in outcomes if o.name in co_partitioned}
    if len(inputs) > 1:
        fail(
            "input topics have different partition counts "
            f"({', '.join(map(str, sorted(inputs)))}); the worker needs them equal: "
            "add partitions with kafka-topics.sh --alter so they match (the embedded "
            "broker cannot: restart it, it starts empty, then run topics create first)",
            status=1,
        )


# --- worker --------------------------------------------------------------------------


@main.command()
@kafka_flags
@click.option(
    "--rules",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The rules file, reloaded when it changes [env TRIGGERSTREAM_RULES].",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="RocksDB state [env TRIGGERSTREAM_DATA_DIR, default ./triggerstream-data].",
)
@click.option(
    "--web-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Metrics and health port [env TRIGGERSTREAM_WEB_PORT, default 6066].",
)
def worker(**flags: Any) -> None:
    """Run a stream worker: read the input topics, write triggers, decisions,
    attributions and dead letters, until SIGTERM or Ctrl-C.

    Workers with the same TRIGGERSTREAM_TOPIC_PREFIX form one consumer group and share
    the input partitions. Every other setting comes from the TRIGGERSTREAM_ environment
    (see the README).
    """
    from triggerstream import worker as stream_worker
    from triggerstream.rules.load import RulesError, load_rules

    settings = build_settings(**flags)
    if settings.rules is None:
        fail("no rules file: pass --rules FILE or set TRIGGERSTREAM_RULES")
        return
    try:
        load_rules(settings.rules)
    except RulesError as error:
        fail(f"the worker needs a valid rules file: {unusable_rules(settings.rules, error)}")
        return
    except OSError as error:
        fail(f"cannot read the rules file {settings.rules}: {error.strerror}")
        return
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fail(f"data dir {settings.data_dir}: cannot make the folder: {error.strerror}")
    if not os.access(settings.data_dir, os.W_OK):
        fail(f"data dir {settings.data_dir}: not writable")
    logging.getLogger("triggerstream").setLevel(settings.log_level.upper())
    shown = ", ".join(f"{k}={v}" for k, v in settings.describe().items() if v is not None)
    click.echo(f"triggerstream worker: {shown}, core: {compiled.BUILD}", err=True)
    try:
        stream_worker.run(settings, settings.rules)
    except (kafka.KafkaUnavailable, stream_worker.WorkerRefused) as error:
        fail(str(error))


# --- produce -------------------------------------------------------------------------


@main.command()
@kafka_flags
@click.argument("file", type=click.File("rb"))
@click.option(
    "--topic",
    default=None,
    help="Send every line to this topic (name without prefix) instead of each line's 'topic'.",
)
@click.option(
    "--no-validate",
    is_flag=True,
    help="Send lines as they are, even invalid ones (to exercise events.dlq).",
)
def produce(file: IO[bytes], topic: str | None, no_validate: bool, **flags: Any) -> None:
    """Publish events from a JSON Lines FILE ('-' for stdin), keyed by user_id.

    Each line is an event envelope; its "topic" field (as in replay files) picks the
    input topic unless --topic is given, and is not part of the published value. Every
    line is checked first: if any is invalid, each problem is listed with its line
    number and nothing is sent (exit status 1).
    """
    settings = build_settings(**flags)
    messages: list[tuple[str, bytes | None, bytes]] = []
    problems: list[str] = []
    # Read now: an event further ahead than the worker takes is refused here as there.
    read_at = time.time()
    for number, raw in enumerate(file, start=1):
        line = raw.strip()
        if number == 1:
            line = line.removeprefix(BOM)  # a file saved by a Windows tool
        if not line:
            continue
        try:
            messages.append(
                _verbatim(line, topic)
                if no_validate
                else _message(line, topic, read_at, settings.max_future)
            )
        except InvalidEvent as error:
            problems.append(f"line {number}: {error.code}: {error.reason}")
    if problems:
        for problem in problems[:20]:
            click.echo(problem, err=True)
        more = f" ({len(problems) - 20} more not shown)" if len(problems) > 20 else ""
        fail(f"{len(problems)} invalid line(s){more}; nothing was sent", status=1)
    messages = [(settings.topic(t), key, value) for t, key, value in messages]
    destinations = sorted({t for t, _, _ in messages})

    async def send() -> int:
        # Before the first message: nothing is sent if any topic does not exist.
        try:
            await kafka.require_topics(settings, destinations)
        except kafka.KafkaUnavailable as error:
            raise kafka.KafkaUnavailable(f"nothing was sent: {error}") from None
        return await kafka.produce(settings, messages)

    sent = run(send())
    click.echo(
        f"produced {sent} event(s) to {', '.join(destinations) or 'no topic'} "
        f"on {settings.kafka_bootstrap}",
        err=True,
    )


def _message(
    line: bytes, topic: str | None, read_at: float, max_future: dt.timedelta
) -> tuple[str, bytes | None, bytes]:
    """(topic, key, value) of a valid line; raises InvalidEvent as the worker would.

    The line is validated by the worker's own decoding, and sent without its "topic".
    """
    destination, event = decode_line(line, topic)
    refuse_future(event, read_at, max_future)
    document = pydantic_core.from_json(line.removeprefix(BOM))
    document.pop("topic", None)
    # pydantic's JSON, not orjson: integers beyond 64 bits stay what they were.
    value = pydantic_core.to_json(document)
    if len(value) > MAX_EVENT_BYTES:
        decode_event(destination, value)  # the worker's own too_large
    return destination, event.user_id.encode(), value


def _verbatim(line: bytes, topic: str | None) -> tuple[str, bytes | None, bytes]:
    """(topic, key, value) of a line sent as it is (--no-validate): to --topic, or to
    the line's "topic" field; keyed by its user_id if it has one."""
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError:
        document = None
    if not isinstance(document, dict):
        document = {}
    destination = topic or document.get("topic")
    if not isinstance(destination, str):
        raise InvalidEvent("missing_field", 'no "topic" field to send it to; pass --topic')
    user = document.get("user_id")
    return destination, user.encode() if isinstance(user, str) else None, line


# --- tail ----------------------------------------------------------------------------


@main.command()
@kafka_flags
@click.argument("topic")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record, not the end.")
@click.option("--max-records", type=click.IntRange(min=1), default=None, help="Stop after N.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop after this many seconds without a new record [default: never].",
)
def tail(
    topic: str,
    from_beginning: bool,
    max_records: int | None,
    timeout: float | None,
    **flags: Any,
) -> None:
    """Print the values of TOPIC (name without prefix), one JSON object a line.

    Reads every partition without joining a consumer group, so it never takes records
    from a worker. A value that is not JSON is printed as {"value_base64": ...}.
    """
    settings = build_settings(**flags)

    async def follow() -> int:
        count = 0
        values = kafka.tail(settings, settings.topic(topic), from_beginning, timeout, max_records)
        async for value in values:
            sys.stdout.buffer.write(_printable(value) + b"\n")
            sys.stdout.buffer.flush()
            count += 1
        return count

    try:
        count = run(follow())
    except KeyboardInterrupt:
        return
    click.echo(f"{count} record(s) from {settings.topic(topic)}", err=True)


def _printable(value: bytes | None) -> bytes:
    if value is None:
        return b"null"
    try:
        return orjson.dumps(orjson.loads(value))
    except orjson.JSONDecodeError:
        return orjson.dumps({"value_base64": base64.b64encode(value).decode()})


# --- rules ---------------------------------------------------------------------------


@main.group()
def rules() -> None:
    """Work with rules files."""


@rules.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def rules_check(file: Path) -> None:
    """Validate a rules FILE: every problem with its line, column and the value (exit 1)."""
    from triggerstream.rules.load import RulesError, load_rules

    try:
        loaded = load_rules(file)
    except RulesError as error:
        for problem in error.problems:
            click.echo(problem.render(str(file)))
        click.echo(f"{len(error.problems)} problem(s) in {file}", err=True)
        sys.exit(1)
    click.echo(
        f"{file}: OK: {len(loaded.rules)} rule(s), {len(loaded.offers)} offer(s), "
        f"{len(loaded.experiments)} experiment(s)"
    )


# --- replay --------------------------------------------------------------------------


@main.command()
@click.option(
    "--rules",
    "rules_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The rules file [env TRIGGERSTREAM_RULES].",
)
@click.argument(
    "events",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path),
)
@click.option("--triggers", type=OUTPUT, default="-", show_default="stdout")
@click.option("--decisions", type=OUTPUT, default=None, help="Write decision records.")
@click.option("--attributions", type=OUTPUT, default=None, help="Write attribution records.")
@click.option("--dlq", type=OUTPUT, default=None, help="Write invalid lines, with why.")
@click.option(
    "--until",
    default=None,
    metavar="TIMESTAMP",
    help="Fire timers due up to this RFC 3339 time at the end (default: the last event's).",
)
@click.option(
    "--now",
    default=None,
    metavar="TIMESTAMP",
    help="When the events are read (RFC 3339): one dated more than TRIGGERSTREAM_MAX_FUTURE "
    "(1h) after it is refused from_future, as the worker refuses it on its clock "
    "[default: the wall clock].",
)
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    default=None,
    help="Input partitions whose orders teach cross-sell apart, as the worker's do "
    "[env TRIGGERSTREAM_PARTITIONS, default topics/topics.yaml's 8].",
)
def replay(
    rules_file: Path | None,
    events: tuple[Path, ...],
    triggers: Path,
    decisions: Path | None,
    attributions: Path | None,
    dlq: Path | None,
    until: str | None,
    now: str | None,
    partitions: int | None,
) -> None:
    """Run the rules over EVENTS (JSON Lines, each an event with its "topic"; '-' reads
    stdin), no broker.

    Writes trigger records as JSON Lines (stdout by default) and a summary to stderr:
    lines read, invalid ones by reason, duplicates, decisions by outcome. Invalid lines
    are counted and skipped. Timers run on event time: what was due by the last event
    (or --until) fires. The same events give the same trigger ids as the worker.
    Co-purchase counts for cross-sell are learned per input partition (a user's
    partition as Kafka's default partitioner picks it), as a worker learns them.
    """
    from triggerstream import replay as replaying
    from triggerstream.core.engine import Engine
    from triggerstream.rules.load import RulesError, load_rules
    from triggerstream.topics import input_partitions

    settings = build_settings()
    path = rules_file or settings.rules
    partitions = partitions or settings.partitions or input_partitions()
    if path is None:
        fail("no rules file: pass --rules FILE or set TRIGGERSTREAM_RULES")
        return
    try:
        loaded = load_rules(path)
    except RulesError as error:
        fail(f"replay needs a valid rules file: {unusable_rules(path, error)}")
        return
    if sum(str(path) == "-" for path in events) > 1:
        fail("stdin ('-') can be read once; name it once among EVENTS")
    until_at = _timestamp("--until", until) if until else None
    now_at = _timestamp("--now", now) if now else None
    named = {"--triggers": triggers, "--decisions": decisions, "--attributions": attributions}
    named["--dlq"] = dlq
    for flag, output in named.items():
        if output is not None:
            writable(output, flag)
    # Opened only now: an unusable rules file or argument leaves every file as it was.
    with contextlib.ExitStack() as files:

        def writer(path: Path | None) -> replaying.Writer | None:
            if path is None:
                return None
            if str(path) == "-":
                return replaying.line_writer(sys.stdout.buffer, "stdout")
            handle = path.open("wb")

            def close() -> None:
                try:
                    handle.close()  # writes what is buffered: may meet a full disk
                except OSError as error:
                    raise OSError(error.errno, error.strerror, str(path)) from None

            files.callback(close)
            return replaying.line_writer(handle, str(path))

        outputs = replaying.Outputs(
            triggers=writer(triggers),
            decisions=writer(decisions),
            attributions=writer(attributions),
            dead_letters=writer(dlq),
        )
        collector.for_many_objects()  # a state per user, alive to the end
        with _progress(events) as advance:
            summary = replaying.run(
                Engine(loaded),
                list(events),
                outputs,
                until_at,
                advance,
                partitions,
                now=now_at,
                max_future=settings.max_future,
            )
    sys.stdout.buffer.flush()
    click.echo(summary.render(), err=True)


def _timestamp(flag: str, text: str) -> float:

    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        fail(f"{flag} {text!r} is not an RFC 3339 timestamp, e.g. 2026-12-01T00:00:00Z")
        raise AssertionError("unreachable") from None
    if parsed.tzinfo is None:
        fail(f"{flag} {text!r} needs an offset, e.g. 2026-12-01T00:00:00Z")
    return parsed.timestamp()


@contextlib.contextmanager
def _progress(paths: tuple[Path, ...]) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on a terminal for inputs over 10 MB; nothing otherwise."""
    size = sum(path.stat().st_size for path in paths if str(path) != "-")
    if not sys.stderr.isatty() or size < 10_000_000:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("replaying", total=size)
        done = 0

        def advance(count: int) -> None:
            nonlocal done
            done += count
            if done >= 1_000_000:
                bar.advance(task, done)
                done = 0

        yield advance


# --- report --------------------------------------------------------------------------


@main.command()
@click.option(
    "--decisions",
    "decision_files",
    multiple=True,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Decision records (JSON Lines, e.g. from replay --decisions); repeatable.",
)
@click.option(
    "--attributions",
    "attribution_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Attribution records (JSON Lines, e.g. from replay --attributions); repeatable.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.option("--output", type=OUTPUT, default="-", help="Where to write [stdout].")
@click.option(
    "--plot", type=click.Path(dir_okay=False, path_type=Path), help="Also draw a PNG chart."
)
@click.option(
    "--min-sample",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Fewer sent or held out than this per group: lift says 'not enough data'.",
)
def report(
    decision_files: tuple[Path, ...],
    attribution_files: tuple[Path, ...],
    output_format: str,
    output: Path,
    plot: Path | None,
    min_sample: int,
) -> None:
    """Matches, sends, suppressions, conversions, revenue and lift over the holdout,
    by rule, variant and channel."""
    from triggerstream import report as reporting
    from triggerstream.records import Attribution, Decision

    # Every destination is checked before the records are read: a chart that cannot be
    # written fails now, not after the report.
    writable(output, "--output")
    if plot is not None:
        writable(plot, "--plot")
        try:
            reporting.plotting_available()
        except RuntimeError as error:
            fail(str(error))
    try:
        decided = reporting.read_records(decision_files, Decision)
        credited = reporting.read_records(attribution_files, Attribution)
    except reporting.NotRecords as error:
        fail(str(error))
        return
    built = reporting.build(decided, credited, min_sample)
    with (
        contextlib.nullcontext(sys.stdout)
        if str(output) == "-"
        else output.open("w", encoding="utf-8")
    ) as written:
        _write_report(built, output_format, written)
    if plot is not None:
        try:
            reporting.plot(built, plot)
        except (RuntimeError, OSError) as error:
            fail(f"--plot {plot}: {error}")
        click.echo(f"chart written to {plot}", err=True)


def _write_report(built: Report, output_format: str, output: IO[str]) -> None:
    import csv

    from triggerstream import report as reporting

    if output_format == "json":
        output.write(orjson.dumps(built.rows(), option=orjson.OPT_INDENT_2).decode() + "\n")
    elif output_format == "csv":
        rows = built.rows()
        writer = csv.DictWriter(output, fieldnames=list(rows[0]) if rows else ["rule"])
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: orjson.dumps(v).decode() if isinstance(v, dict) else v for k, v in row.items()}
            )
    else:
        from rich.console import Console

        # Wide enough for every column on one line; a terminal narrower than that
        # scrolls rather than folds the numbers.
        console = Console(file=output, width=max(200, Console().width))
        console.print(reporting.render_table(built))
        if built.erased:
            console.print(f"{built.erased} erasure(s) recorded")


if __name__ == "__main__":
    main()


# --- demo and loadgen ----------------------------------------------------------------


@main.command()
@click.option(
    "--rules",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Rules file [default: the example rules, examples/rules.yaml].",
)
@click.option("--users", type=click.IntRange(1), default=5000, show_default=True)
@click.option(
    "--rate", type=click.FloatRange(min=1), default=100, show_default=True, help="Events/s."
)
@click.option(
    "--duration",
    type=click.FloatRange(min=1),
    default=None,
    help="Seconds of traffic, then a summary [default: until Ctrl-C].",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=0, help="Broker port [default: a free one]."
)
@click.option(
    "--web-port",
    type=click.IntRange(1, 65535),
    default=6066,
    show_default=True,
    help="The worker's metrics and health port.",
)
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the logs and RocksDB state in this directory [default: removed at the end].",
)
@click.option(
    "--screenshot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Save the final view as an SVG picture.",
)
def demo(
    rules: Path | None,
    users: int,
    rate: float,
    duration: float | None,
    port: int,
    web_port: int,
    keep: Path | None,
    screenshot: Path | None,
) -> None:
    """Run everything on this machine, with nothing else installed: an embedded broker,
    the topics, a worker, realistic users (listeners skipping tracks, teams filling
    their storage, shoppers, trials, tickets, NPS answers, and their answers to the
    offers they get), and a live view of triggers, suppressions and latency.

    Ctrl-C stops it all in order and prints a summary.
    """
    from rich.console import Console

    from triggerstream.broker import BrokerNotAvailable
    from triggerstream.demo import DemoError, DemoOptions
    from triggerstream.demo import run as run_demo
    from triggerstream.rules.load import RulesError, load_rules

    if rules is not None:
        try:
            load_rules(rules)
        except RulesError as error:
            fail(f"the demo needs a valid rules file: {unusable_rules(rules, error)}")
    # Where it writes is checked before anything starts: a picture that cannot be saved
    # must not cost the run and its summary.
    if screenshot is not None:
        writable(screenshot, "--screenshot")
    if keep is not None:
        try:
            keep.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            fail(f"--keep {keep}: cannot make the folder: {error.strerror}")
        if not os.access(keep, os.W_OK):
            fail(f"--keep {keep}: not writable")
    port = port or _free_port()
    for wanted, flag in ((port, "--port"), (web_port, "--web-port")):
        if not _port_is_free(wanted):
            fail(f"port {wanted} on 127.0.0.1 is in use; pick another with {flag}")
    began = time.monotonic()
    console = Console(stderr=False)
    try:
        options = DemoOptions(rules, users, rate, duration, port, web_port, keep, screenshot)
        tally = run_demo(options, console, began)
    except (DemoError, BrokerNotAvailable, kafka.KafkaUnavailable) as error:
        fail(str(error), status=1)
        return
    except KeyboardInterrupt:
        console.print("stopped before the traffic started")
        return
    first = tally.first_trigger_after
    console.print()
    console.print(
        f"ready in {tally.startup:.1f} s (broker, topics, worker); first trigger "
        + (
            "never came"
            if first is None
            else f"{tally.startup + first:.1f} s after start ({first:.1f} s into the traffic)"
        )
        + f"; {sum(tally.triggers.values()):,} triggers, "
        + f"{sum(tally.suppressions.values()):,} suppressed, {tally.conversions:,} conversions"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@main.command()
@kafka_flags
@click.option(
    "--rate", type=click.FloatRange(min=1), default=200, show_default=True, help="Events/s."
)
@click.option("--users", type=click.IntRange(1), default=10_000, show_default=True)
@click.option(
    "--duration",
    type=click.FloatRange(min=1),
    default=None,
    help="Seconds to run [default: until Ctrl-C].",
)
@click.option("--seed", type=int, default=None, help="Same seed, same users [default: the clock].")
@click.option(
    "--react/--no-react",
    default=False,
    show_default=True,
    help="Users answer the offers they get (reads the trigger topics): feedback, purchases.",
)
def loadgen(
    rate: float, users: int, duration: float | None, seed: int | None, react: bool, **flags: Any
) -> None:
    """Produce the demo's realistic traffic at a steady rate to any broker, for
    benchmarks and soak tests. Prints the rate reached every 10 seconds on stderr.
    """
    from triggerstream.loadgen import Load, follow, reacting
    from triggerstream.records import CHANNEL_TOPICS
    from triggerstream.simulation import Population

    settings = build_settings(**flags)
    population = Population(users, seed=int(time.time()) if seed is None else seed)
    load = Load(settings, population, rate)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        tasks = [asyncio.create_task(load.run(stop, duration))]
        if react:
            tasks.append(
                asyncio.create_task(
                    follow(settings, CHANNEL_TOPICS.values(), reacting(population), stop)
                )
            )
        began = time.monotonic()
        while not tasks[0].done():
            await asyncio.wait([tasks[0]], timeout=10)
            click.echo(
                f"loadgen: {load.sent:,} events in {time.monotonic() - began:,.0f} s "
                f"({load.events_per_second(10):,.0f}/s)",
                err=True,
            )
        stop.set()
        await asyncio.gather(*tasks)

    click.echo(
        f"loadgen: {rate:,.0f} events/s from {users:,} users to {settings.kafka_bootstrap}"
        + (f" for {duration:,.0f} s" if duration else "; Ctrl-C stops"),
        err=True,
    )
    run(main())
