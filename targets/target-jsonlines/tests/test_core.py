"""Tests for target-jsonlines: SDK standard target tests plus file, state and failure checks."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time
import typing as t
from pathlib import Path

import pytest
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.testing import get_target_test_class
from singer_sdk.testing.runners import TargetTestRunner

from target_jsonlines.sinks import JsonLinesSink, stream_file_name
from target_jsonlines.target import FailAfterRecordsError, TargetJsonLines

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

Message = dict[str, t.Any]
Snapshot = dict[str, list[dict[str, t.Any]]]

# --------------------------------------------------------------------------------------
# SDK standard target tests
# --------------------------------------------------------------------------------------
# None of the standard tests is inapplicable, so nothing is skipped or marked xfail. (The
# SDK itself leaves TargetMultipleStateMessages out of its target suite.) The config given
# to the factory is a placeholder: the `runner` fixture is overridden so that every test
# writes into its own pytest tmp dir.

_StandardTargetTests = get_target_test_class(
    TargetJsonLines,
    config={"destination_path": "overridden-by-the-runner-fixture"},
)


class TestTargetJsonLinesStandard(_StandardTargetTests):  # type: ignore[misc,valid-type]
    """SDK standard target tests, append mode."""

    extra_config: t.ClassVar[dict[str, t.Any]] = {}

    @pytest.fixture
    def runner(self, tmp_path: Path) -> TargetTestRunner:
        """Runner writing into this test's own tmp dir."""
        config = {"destination_path": str(tmp_path / "out"), **self.extra_config}
        return TargetTestRunner(target_class=TargetJsonLines, config=config)


class TestTargetJsonLinesStandardUpsert(TestTargetJsonLinesStandard):
    """SDK standard target tests, upsert mode with tiny batches."""

    extra_config: t.ClassVar[dict[str, t.Any]] = {"upsert": True, "batch_size_rows": 2}


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def schema_msg(
    stream: str,
    key_properties: list[str] | None = None,
    properties: dict[str, t.Any] | None = None,
) -> Message:
    return {
        "type": "SCHEMA",
        "stream": stream,
        "key_properties": ["id"] if key_properties is None else key_properties,
        "schema": {
            "type": "object",
            "properties": properties or {"id": {"type": "integer"}, "v": {"type": "string"}},
        },
    }


def record_msg(stream: str, record: dict[str, t.Any]) -> Message:
    return {"type": "RECORD", "stream": stream, "record": record}


def state_msg(value: dict[str, t.Any]) -> Message:
    return {"type": "STATE", "value": value}


def singer_lines(messages: Sequence[Message | str]) -> str:
    """Singer input text; `str` items are raw JSON lines (to control number spelling)."""
    return "".join((m if isinstance(m, str) else json.dumps(m)) + "\n" for m in messages)


def read_jsonl(path: Path) -> list[dict[str, t.Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def snapshot(directory: Path) -> Snapshot:
    """Records of every stream file in `directory`, keyed by file name."""
    if not directory.exists():
        return {}
    return {path.name: read_jsonl(path) for path in sorted(directory.glob("*.jsonl"))}


def ids(records: list[dict[str, t.Any]]) -> list[int]:
    return [record["id"] for record in records]


def missing_covered_records(state: dict[str, t.Any], files: Snapshot) -> dict[str, set[int]]:
    """Records a STATE claims but that are not in the files.

    Test states look like {"bookmarks": {stream: n}}: records 1..n of the stream were sent.
    """
    missing = {}
    for stream, last_id in state["bookmarks"].items():
        present = set(ids(files.get(stream_file_name(stream), [])))
        if lost := set(range(1, last_id + 1)) - present:
            missing[stream] = lost
    return missing


class FsyncSpy:
    """Wraps os.fsync to remember how many bytes of each file (by inode) were fsync'ed."""

    def __init__(self) -> None:
        self.synced_size: dict[tuple[int, int], int] = {}
        self.events: list[tuple[str, int]] = []
        self._real_fsync = os.fsync

    def __call__(self, fd: int) -> None:
        """Fsync `fd` and record the file's size."""
        self._real_fsync(fd)
        st = os.fstat(fd)
        self.synced_size[st.st_dev, st.st_ino] = st.st_size
        self.events.append(("fsync", st.st_ino))

    def unsynced_files(self, directory: Path) -> list[str]:
        """Files in `directory` whose current content was not entirely fsync'ed."""
        unsynced = []
        for path in sorted(directory.glob("*.jsonl")) if directory.exists() else []:
            st = path.stat()
            if self.synced_size.get((st.st_dev, st.st_ino)) != st.st_size:
                unsynced.append(path.name)
        return unsynced


class StdoutProbe(io.StringIO):
    """Captured stdout that, whenever a STATE line is written, looks at the files on disk."""

    def __init__(self, directory: Path, spy: FsyncSpy) -> None:
        super().__init__()
        self.directory = directory
        self.spy = spy
        self.states: list[dict[str, t.Any]] = []
        self.files_at_state: list[Snapshot] = []
        self.unsynced_at_state: list[list[str]] = []
        self._partial = ""

    def write(self, s: str) -> int:
        """Capture `s`; for each complete STATE line, snapshot the files."""
        self._partial += s
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            if line.strip():
                self.states.append(json.loads(line))
                self.files_at_state.append(snapshot(self.directory))
                self.unsynced_at_state.append(self.spy.unsynced_files(self.directory))
        return super().write(s)


@dataclasses.dataclass
class Run:
    """What a target run emitted, and the files as they were at each STATE."""

    states: list[dict[str, t.Any]]
    files_at_state: list[Snapshot]
    unsynced_at_state: list[list[str]]
    error: BaseException | None


@pytest.fixture(autouse=True)
def _restore_signal_handlers() -> Iterator[None]:
    """Each Target instance installs SIGINT/SIGTERM handlers; put pytest's back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture
def fsync_spy(monkeypatch: pytest.MonkeyPatch) -> FsyncSpy:
    spy = FsyncSpy()
    monkeypatch.setattr(os, "fsync", spy)
    return spy


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    return tmp_path / "out"


@pytest.fixture
def run_target(fsync_spy: FsyncSpy, out_dir: Path) -> Callable[..., Run]:
    """Run a target in-process on `messages`; expected errors are returned, not raised."""

    def _run(
        messages: list[Message | str],
        target_class: type[TargetJsonLines] = TargetJsonLines,
        expect: type[BaseException] | None = None,
        **settings: t.Any,
    ) -> Run:
        target = target_class(config={"destination_path": str(out_dir), **settings})
        probe = StdoutProbe(out_dir, fsync_spy)
        error: BaseException | None = None
        with contextlib.redirect_stdout(probe):
            try:
                target.listen(file_input=io.StringIO(singer_lines(messages)))
            except BaseException as exc:
                if expect is None or not isinstance(exc, expect):
                    raise
                error = exc
        if expect is not None and error is None:
            pytest.fail(f"{expect.__name__} was not raised")
        return Run(probe.states, probe.files_at_state, probe.unsynced_at_state, error)

    return _run


def assert_states_durable(run: Run) -> None:
    """Every emitted STATE's records were on disk, fully fsync'ed, when it was written."""
    for state, files, unsynced in zip(
        run.states, run.files_at_state, run.unsynced_at_state, strict=True
    ):
        assert missing_covered_records(state, files) == {}, state
        assert unsynced == [], state


# --------------------------------------------------------------------------------------
# File naming and content
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "file_name"),
    [
        ("users", "users.jsonl"),
        ("public.users", "public.users.jsonl"),
        ("my-stream_2", "my-stream_2.jsonl"),
        ("a/b c", "a%2Fb%20c.jsonl"),
        ("100%", "100%25.jsonl"),
        ("~x", "%7Ex.jsonl"),
        (".hidden", "%2Ehidden.jsonl"),
        ("..", "%2E..jsonl"),
        ("café", "caf%C3%A9.jsonl"),
    ],
)
def test_stream_file_name(stream: str, file_name: str) -> None:
    assert stream_file_name(stream) == file_name


@pytest.mark.parametrize("stream", ["", "x" * 300])
def test_stream_file_name_rejects_unusable_names(stream: str) -> None:
    with pytest.raises(ValueError, match="Stream name"):
        stream_file_name(stream)


def test_one_file_per_stream_with_exact_records(
    run_target: Callable[..., Run], out_dir: Path
) -> None:
    props = {
        "v": {"type": ["string", "null"]},
        "ts": {"type": "string", "format": "date-time"},
        "price": {"type": "number"},
        "id": {"type": "integer"},
        "tags": {"type": "object"},
    }
    run = run_target(
        [
            schema_msg("my-stream", properties=props),
            schema_msg("public.users", properties=props),
            schema_msg("weird name/x", key_properties=[], properties=props),
            '{"type": "RECORD", "stream": "my-stream", "record": '
            '{"v": "café", "ts": "2021-01-01T00:00:00Z", "price": 1.50, "id": 1}}',
            record_msg("public.users", {"id": 7, "tags": {"b": [1, 2.25]}, "v": None}),
            record_msg("my-stream", {"id": 2, "_sdc_extracted_at": "2021-01-01"}),
            record_msg("weird name/x", {"v": "no key"}),
            state_msg({"bookmarks": {"my-stream": 2}}),
        ]
    )
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "my-stream.jsonl",
        "public.users.jsonl",
        "weird%20name%2Fx.jsonl",
    ]
    # Compact JSON, keys in the order received, values untouched (no datetime/float
    # re-spelling), `_sdc_*` keys neither added nor removed.
    assert (out_dir / "my-stream.jsonl").read_text() == (
        '{"v":"caf\\u00e9","ts":"2021-01-01T00:00:00Z","price":1.50,"id":1}\n'
        '{"id":2,"_sdc_extracted_at":"2021-01-01"}\n'
    )
    assert (out_dir / "public.users.jsonl").read_text() == (
        '{"id":7,"tags":{"b":[1,2.25]},"v":null}\n'
    )
    assert (out_dir / "weird%20name%2Fx.jsonl").read_text() == '{"v":"no key"}\n'
    assert run.states == [{"bookmarks": {"my-stream": 2}}]
    assert_states_durable(run)


def test_destination_path_is_created(tmp_path: Path, run_target: Callable[..., Run]) -> None:
    nested = tmp_path / "a" / "b"
    run_target([schema_msg("s"), record_msg("s", {"id": 1})], destination_path=str(nested))
    assert read_jsonl(nested / "s.jsonl") == [{"id": 1}]


# --------------------------------------------------------------------------------------
# Append and upsert
# --------------------------------------------------------------------------------------


def test_append_mode_duplicates_resent_records(
    run_target: Callable[..., Run], out_dir: Path
) -> None:
    messages = [schema_msg("s"), record_msg("s", {"id": 1, "v": "a"})]
    run_target([*messages, record_msg("s", {"id": 1, "v": "b"})])
    run_target(messages)  # a resumed run re-sends a record
    assert read_jsonl(out_dir / "s.jsonl") == [
        {"id": 1, "v": "a"},
        {"id": 1, "v": "b"},
        {"id": 1, "v": "a"},
    ]


@pytest.mark.parametrize("batch_size_rows", [1, 2, 100])
def test_upsert_keeps_latest_version_per_key(
    run_target: Callable[..., Run], out_dir: Path, batch_size_rows: int
) -> None:
    run_target(
        [
            schema_msg("s"),
            schema_msg("nokey", key_properties=[]),
            record_msg("s", {"id": 1, "v": "a"}),
            record_msg("s", {"id": 2, "v": "b"}),
            record_msg("s", {"id": 1, "v": "c"}),
            record_msg("nokey", {"id": 1, "v": "a"}),
            record_msg("nokey", {"id": 1, "v": "a"}),
        ],
        upsert=True,
        batch_size_rows=batch_size_rows,
    )
    assert read_jsonl(out_dir / "s.jsonl") == [{"id": 1, "v": "c"}, {"id": 2, "v": "b"}]
    run_target(
        [
            schema_msg("s"),
            schema_msg("nokey", key_properties=[]),
            record_msg("s", {"id": 2, "v": "z"}),
            record_msg("s", {"id": 3, "v": "q"}),
            record_msg("nokey", {"id": 1, "v": "a"}),
        ],
        upsert=True,
        batch_size_rows=batch_size_rows,
    )
    assert read_jsonl(out_dir / "s.jsonl") == [
        {"id": 1, "v": "c"},
        {"id": 2, "v": "z"},
        {"id": 3, "v": "q"},
    ]
    # Streams without key properties are appended to even in upsert mode.
    assert read_jsonl(out_dir / "nokey.jsonl") == [{"id": 1, "v": "a"}] * 3
    assert sorted(p.name for p in out_dir.iterdir()) == ["nokey.jsonl", "s.jsonl"]  # no .tmp


def test_upsert_composite_key(run_target: Callable[..., Run], out_dir: Path) -> None:
    props = {"id": {"type": "integer"}, "k": {"type": "string"}, "v": {"type": "integer"}}
    run_target(
        [
            schema_msg("s", key_properties=["id", "k"], properties=props),
            record_msg("s", {"id": 1, "k": "x", "v": 1}),
            record_msg("s", {"id": 1, "k": "y", "v": 2}),
            record_msg("s", {"id": 1, "k": "x", "v": 3}),
        ],
        upsert=True,
    )
    assert read_jsonl(out_dir / "s.jsonl") == [
        {"id": 1, "k": "x", "v": 3},
        {"id": 1, "k": "y", "v": 2},
    ]


def test_upsert_fsyncs_temp_file_before_atomic_replace(
    run_target: Callable[..., Run],
    out_dir: Path,
    fsync_spy: FsyncSpy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_target([schema_msg("s"), record_msg("s", {"id": 1, "v": "a"})], upsert=True)
    real_replace = os.replace

    def spy_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        fsync_spy.events.append(("replace", Path(src).stat().st_ino))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy_replace)
    fsync_spy.events.clear()
    run_target([schema_msg("s"), record_msg("s", {"id": 1, "v": "b"})], upsert=True)

    replaces = [i for i, (kind, _) in enumerate(fsync_spy.events) if kind == "replace"]
    assert len(replaces) == 1
    replaced_inode = fsync_spy.events[replaces[0]][1]
    assert ("fsync", replaced_inode) in fsync_spy.events[: replaces[0]]  # temp file synced
    dir_inode = out_dir.stat().st_ino
    assert ("fsync", dir_inode) in fsync_spy.events[replaces[0] :]  # then the rename
    assert (out_dir / "s.jsonl").stat().st_ino == replaced_inode
    assert read_jsonl(out_dir / "s.jsonl") == [{"id": 1, "v": "b"}]


def test_upsert_failure_leaves_previous_file_intact(
    run_target: Callable[..., Run], out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_target([schema_msg("s"), record_msg("s", {"id": 1, "v": "a"})], upsert=True)
    before = (out_dir / "s.jsonl").read_bytes()

    def broken_replace(*_args: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    run = run_target(
        [
            schema_msg("s"),
            record_msg("s", {"id": 1, "v": "b"}),
            state_msg({"bookmarks": {"s": 1}}),
        ],
        upsert=True,
        expect=OSError,
    )
    assert (out_dir / "s.jsonl").read_bytes() == before
    assert [p.name for p in out_dir.iterdir()] == ["s.jsonl"]  # temp file removed
    assert run.states == []


@pytest.mark.parametrize(
    ("upsert", "expected"),
    [
        (False, [{"id": 1, "v": "old"}, {"id": 1, "v": "new", "n": 1}, {"id": 2, "n": 2}]),
        (True, [{"id": 1, "v": "new", "n": 1}, {"id": 2, "n": 2}]),
    ],
)
def test_schema_change_keeps_input_order(
    run_target: Callable[..., Run],
    out_dir: Path,
    upsert: bool,
    expected: list[dict[str, t.Any]],
) -> None:
    # The SDK parks the pre-change sink until the next full drain; the new sink's full
    # batch must not overtake the older record.
    new_props = {"id": {"type": "integer"}, "v": {"type": "string"}, "n": {"type": "integer"}}
    run_target(
        [
            schema_msg("s"),
            record_msg("s", {"id": 1, "v": "old"}),
            schema_msg("s", properties=new_props),
            record_msg("s", {"id": 1, "v": "new", "n": 1}),
            record_msg("s", {"id": 2, "n": 2}),
        ],
        upsert=upsert,
        batch_size_rows=2,
    )
    assert read_jsonl(out_dir / "s.jsonl") == expected


# --------------------------------------------------------------------------------------
# Leftovers of interrupted runs
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("existing", "expected_ids"),
    [
        ('{"id":1}\n{"id":2,"v":"tr', [1, 3]),  # append died mid-line: dropped
        ('{"id":1}\n{"id":2}', [1, 2, 3]),  # complete but unterminated: kept
        ("", [3]),
    ],
)
@pytest.mark.parametrize("upsert", [False, True])
def test_incomplete_last_line_is_repaired(
    run_target: Callable[..., Run],
    out_dir: Path,
    existing: str,
    expected_ids: list[int],
    upsert: bool,
) -> None:
    out_dir.mkdir()
    (out_dir / "s.jsonl").write_text(existing)
    run_target([schema_msg("s"), record_msg("s", {"id": 3})], upsert=upsert)
    text = (out_dir / "s.jsonl").read_text()
    assert text.endswith("\n")
    assert ids(read_jsonl(out_dir / "s.jsonl")) == expected_ids


def test_upsert_refuses_to_rewrite_a_corrupt_file(
    run_target: Callable[..., Run], out_dir: Path
) -> None:
    out_dir.mkdir()
    (out_dir / "s.jsonl").write_text('{"id":1}\nnot json\n{"id":2}\n')
    with pytest.raises(ValueError, match=r"s\.jsonl:2 is not valid JSON"):
        run_target([schema_msg("s"), record_msg("s", {"id": 3})], upsert=True)
    assert (out_dir / "s.jsonl").read_text() == '{"id":1}\nnot json\n{"id":2}\n'


# --------------------------------------------------------------------------------------
# STATE only after records are durably on disk
# --------------------------------------------------------------------------------------


def interleaved_messages(n: int) -> list[Message]:
    """Two streams; after each record a STATE claiming everything sent so far."""
    messages = [schema_msg("animals"), schema_msg("plants.v2")]
    for i in range(1, n + 1):
        messages.append(record_msg("animals", {"id": i}))
        if i % 2 == 0:
            messages.append(record_msg("plants.v2", {"id": i // 2}))
        messages.append(state_msg({"bookmarks": {"animals": i, "plants.v2": i // 2}}))
    return messages


@pytest.mark.parametrize("upsert", [False, True])
def test_state_is_emitted_only_after_its_records_are_on_disk(
    run_target: Callable[..., Run], out_dir: Path, upsert: bool
) -> None:
    messages = interleaved_messages(9)
    run = run_target(messages, upsert=upsert, batch_size_rows=2)

    input_states = [m["value"] for m in messages if m["type"] == "STATE"]
    assert len(run.states) >= 3  # checkpoints while running, not only at the end
    assert all(state in input_states for state in run.states)
    assert [input_states.index(s) for s in run.states] == sorted(
        {input_states.index(s) for s in run.states}
    )  # in input order, no repeats
    assert run.states[-1] == input_states[-1]
    assert_states_durable(run)
    assert snapshot(out_dir) == {
        "animals.jsonl": [{"id": i} for i in range(1, 10)],
        "plants.v2.jsonl": [{"id": i} for i in range(1, 5)],
    }


def test_same_state_is_emitted_once(run_target: Callable[..., Run]) -> None:
    # The batch drain on record 2 emits S1; the final drain has no newer STATE to emit.
    run = run_target(
        [
            schema_msg("s"),
            record_msg("s", {"id": 1}),
            state_msg({"bookmarks": {"s": 1}}),
            record_msg("s", {"id": 2}),
        ],
        batch_size_rows=2,
    )
    assert run.states == [{"bookmarks": {"s": 1}}]
    assert_states_durable(run)


class _NoFsyncSink(JsonLinesSink):
    """Broken on purpose: appends without fsync."""

    def _append(self, lines: list[bytes]) -> None:
        with self.file_path.open("ab") as fh:
            fh.write(b"".join(lines))


class _NoFsyncTarget(TargetJsonLines):
    default_sink_class = _NoFsyncSink


class _LosingSink(JsonLinesSink):
    """Broken on purpose: loses the first batch of each stream."""

    def _append(self, lines: list[bytes]) -> None:
        if getattr(self, "lost_one", False):
            super()._append(lines)
        self.lost_one = True


class _LosingTarget(TargetJsonLines):
    default_sink_class = _LosingSink


@pytest.mark.parametrize("broken_target", [_NoFsyncTarget, _LosingTarget])
def test_durability_check_catches_broken_sinks(
    run_target: Callable[..., Run], broken_target: type[TargetJsonLines]
) -> None:
    """The checks used above do fail when records are not durably written."""
    run = run_target(interleaved_messages(6), target_class=broken_target, batch_size_rows=2)
    with pytest.raises(AssertionError):
        assert_states_durable(run)


def test_fail_after_records(run_target: Callable[..., Run], out_dir: Path) -> None:
    messages = [schema_msg("s")]
    for i in range(1, 7):
        messages += [record_msg("s", {"id": i}), state_msg({"bookmarks": {"s": i}})]
    run = run_target(
        messages, batch_size_rows=2, fail_after_records=5, expect=FailAfterRecordsError
    )

    assert isinstance(run.error, FailAfterRecordsError)
    assert str(run.error) == (
        "target-jsonlines: failing on purpose after 5 records (fail_after_records)"
    )
    # Batches [1, 2] and [3, 4] were drained; record 5 was still buffered.
    assert read_jsonl(out_dir / "s.jsonl") == [{"id": i} for i in range(1, 5)]
    # Each drain emitted the latest STATE received before it (the one after 1, then 3).
    assert run.states == [{"bookmarks": {"s": 1}}, {"bookmarks": {"s": 3}}]
    assert_states_durable(run)


def test_sigterm_while_writing_exits_without_state(
    run_target: Callable[..., Run], out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_append = JsonLinesSink._append

    def interrupted_append(self: JsonLinesSink, lines: list[bytes]) -> None:
        real_append(self, lines[:1])
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the target's signal handler runs here
        real_append(self, lines[1:])

    monkeypatch.setattr(JsonLinesSink, "_append", interrupted_append)
    messages = [schema_msg("s")]
    for i in range(1, 4):
        messages += [record_msg("s", {"id": i}), state_msg({"bookmarks": {"s": i}})]
    started = time.monotonic()
    run = run_target(messages, expect=SystemExit)

    assert time.monotonic() - started < 4
    assert isinstance(run.error, SystemExit)
    assert run.error.code == 128 + signal.SIGTERM
    assert run.states == []  # the SDK alone would emit {"s": 3} here, and exit 0
    assert read_jsonl(out_dir / "s.jsonl") == [{"id": 1}]


def test_sigterm_between_batches_drains_and_emits_state(fsync_spy: FsyncSpy, out_dir: Path) -> None:
    target = TargetJsonLines(config={"destination_path": str(out_dir)})
    messages = [schema_msg("s"), record_msg("s", {"id": 1}), state_msg({"bookmarks": {"s": 1}})]
    probe = StdoutProbe(out_dir, fsync_spy)
    with contextlib.redirect_stdout(probe):
        target.process_lines(io.StringIO(singer_lines(messages)))  # no end-of-pipe drain
        with pytest.raises(SystemExit) as exc_info:
            target._handle_termination(signal.SIGTERM, None)
    assert exc_info.value.code == 0
    assert probe.states == [{"bookmarks": {"s": 1}}]
    assert_states_durable(Run(probe.states, probe.files_at_state, probe.unsynced_at_state, None))


SLOW_UPSERT = """\
import os, sys, threading, time
real_fsync = os.fsync
def slow_fsync(fd):
    # While a worker thread writes an upsert temp file: say so, and take long enough to be killed.
    if threading.current_thread() is not threading.main_thread():
        sys.stderr.write("writing a temp file\\n")
        sys.stderr.flush()
        time.sleep(30)
    real_fsync(fd)
os.fsync = slow_fsync
from target_jsonlines.target import TargetJsonLines
TargetJsonLines.cli()
"""


def test_sigterm_during_a_parallel_drain_leaves_no_temp_file(tmp_path: Path) -> None:
    # Two upsert streams: the end-of-input drain writes both in the SDK's worker threads.
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "a.jsonl").write_text('{"id": 0}\n')
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"destination_path": str(dest), "upsert": True}))
    messages = [schema_msg("a"), schema_msg("b")]
    messages += [record_msg("a", {"id": 1}), record_msg("b", {"id": 1})]
    target = subprocess.Popen(
        [sys.executable, "-c", SLOW_UPSERT, "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    assert target.stdin is not None
    assert target.stderr is not None
    target.stdin.write(singer_lines(messages))
    target.stdin.close()  # end of input: drain every sink
    for line in target.stderr:
        if "writing a temp file" in line:
            break
    assert list(dest.glob(".*.tmp")), "the drain was not writing a temp file"
    target.send_signal(signal.SIGTERM)
    target.wait(timeout=20)
    assert target.stdout is not None
    out, err = target.stdout.read(), target.stderr.read()

    assert target.returncode == 128 + signal.SIGTERM, err
    assert out == ""  # no STATE: the batches were not written
    assert sorted(p.name for p in dest.iterdir()) == ["a.jsonl"]  # no temp file, b never made
    assert read_jsonl(dest / "a.jsonl") == [{"id": 0}]  # the file being replaced is untouched


# --------------------------------------------------------------------------------------
# Settings and CLI
# --------------------------------------------------------------------------------------


def test_load_method_is_not_offered(out_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    TargetJsonLines.print_about(output_format="json")
    settings = json.loads(capsys.readouterr().out)["settings"]["properties"]
    assert {"destination_path", "upsert", "fail_after_records", "batch_size_rows"} <= set(settings)
    assert settings["destination_path"]["default"] == "output"
    assert settings["upsert"]["default"] is False
    assert "load_method" not in settings
    TargetJsonLines(config={"destination_path": str(out_dir), "load_method": "append-only"})
    with pytest.raises(ConfigValidationError):
        TargetJsonLines(config={"destination_path": str(out_dir), "load_method": "upsert"})


def run_cli(args: list[str], stdin: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = "from target_jsonlines.target import TargetJsonLines; TargetJsonLines.cli()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_cli_fail_after_records(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"batch_size_rows": 2, "fail_after_records": 5}))
    messages = [schema_msg("s")]
    for i in range(1, 7):
        messages += [record_msg("s", {"id": i}), state_msg({"bookmarks": {"s": i}})]

    result = run_cli(["--config", str(config)], singer_lines(messages), cwd=tmp_path)

    assert result.returncode != 0
    assert "target-jsonlines: failing on purpose after 5 records (fail_after_records)" in (
        result.stderr
    )
    states = [json.loads(line) for line in result.stdout.splitlines()]
    assert states == [{"bookmarks": {"s": 1}}, {"bookmarks": {"s": 3}}]
    on_disk = snapshot(tmp_path / "output")  # default destination_path
    assert ids(on_disk["s.jsonl"]) == [1, 2, 3, 4]
    assert all(missing_covered_records(state, on_disk) == {} for state in states)


def test_cli_success(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"destination_path": "dest"}))
    result = run_cli(["--config", str(config)], singer_lines(interleaved_messages(3)), tmp_path)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"bookmarks": {"animals": 3, "plants.v2": 1}}
    ]
    assert snapshot(tmp_path / "dest") == {
        "animals.jsonl": [{"id": 1}, {"id": 2}, {"id": 3}],
        "plants.v2.jsonl": [{"id": 1}],
    }
