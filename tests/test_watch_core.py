"""The parts of `watch` that are its own: inbox, state in the store, retry policy and the runner's scheduling.

The runner is driven here by a stand-in for session.register_audio (a unit in isolation); the real
thing, against the emulator, is in test_watch_e2e.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from dasctl import events
from dasctl.errors import AudioError, AuthError, ExitCode, ServiceUnavailable, UsageError
from dasctl.session import Progress, RegisterOutcome
from dasctl.store import Store, StoreBusy, WatchFile, open_store
from dasctl.watch import (
    DEFAULT_JOURNAL_NAME,
    JOURNAL_SCHEMA,
    FileIdentity,
    Inbox,
    RetryPolicy,
    ServiceHealth,
    SessionTap,
    SilentObserver,
    WatchRunner,
    WatchSettings,
    WatchState,
)

OLD = time.time() - 3600  # an mtime that has long settled


def make_file(path: Path, data: bytes = b"RIFF....", mtime: float | None = OLD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


# ---------------------------------------------------------------------------------------------- inbox


def test_inbox_takes_matching_files_and_skips_hidden_temp_and_excluded(tmp_path: Path) -> None:
    for name in ("a.wav", "B.WAV", "c.mp3", ".hidden.wav", "d.wav.part", "e.wav~", "sub/f.wav", "done/g.wav"):
        make_file(tmp_path / name)
    flat = Inbox(tmp_path, ["*.wav"], excluded=[tmp_path / "done"])
    assert [p.name for p in flat.scan()] == ["B.WAV", "a.wav"]
    deep = Inbox(tmp_path, ["*.wav"], recursive=True, excluded=[tmp_path / "done"])
    assert sorted(deep.relpath(p) for p in deep.scan()) == ["B.WAV", "a.wav", "sub/f.wav"]
    assert not deep.accepts(tmp_path / DEFAULT_JOURNAL_NAME)


def test_inbox_settles_a_file_only_once_it_stops_changing(tmp_path: Path) -> None:
    now = [100.0]
    inbox = Inbox(tmp_path, settle=2.0, clock=lambda: now[0], wallclock=lambda: time.time())
    growing = make_file(tmp_path / "growing.wav", b"x" * 10, mtime=None)  # mtime = now: just written
    inbox.observe(growing)
    assert inbox.take_settled() == []
    now[0] += 1.5
    with growing.open("ab") as handle:
        handle.write(b"y" * 10)
    assert inbox.take_settled() == []  # it changed: the clock starts again
    now[0] += 1.5
    assert inbox.take_settled() == []  # 1.5 s unchanged is not enough
    now[0] += 1.0
    [settled] = inbox.take_settled()
    assert settled.identity.relpath == "growing.wav" and settled.identity.size == 20
    assert inbox.waiting == 0


def test_inbox_ignores_a_folder_named_like_a_recording(tmp_path: Path) -> None:
    (tmp_path / "folder.wav").mkdir()
    inbox = Inbox(tmp_path, settle=0.0)
    inbox.observe(tmp_path / "folder.wav")
    assert list(inbox.scan()) == [] and inbox.take_settled() == []


def test_inbox_takes_an_old_file_at_once(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path, settle=30.0)
    inbox.observe(make_file(tmp_path / "old.wav"))
    assert [s.identity.relpath for s in inbox.take_settled()] == ["old.wav"]


def test_identity_changes_when_a_file_is_re_recorded(tmp_path: Path) -> None:
    path = make_file(tmp_path / "a.wav", b"one")
    first = FileIdentity("a.wav", path.stat().st_size, path.stat().st_mtime_ns)
    make_file(path, b"two", mtime=OLD + 5)
    second = FileIdentity("a.wav", path.stat().st_size, path.stat().st_mtime_ns)
    assert first != second and first.id != second.id


# ---------------------------------------------------------------------------------------------- journal


def journal_line(identity: FileIdentity, state: str, **fields: Any) -> str:
    """One line of the journal file that earlier dasctl versions kept in the watched folder."""
    return json.dumps({"schema": JOURNAL_SCHEMA, **identity.fields(), "state": state, **fields}) + "\n"


def watch_files(store: Store, root: Path) -> dict[str, WatchFile]:
    return {known.key.relpath: known for known in store.watch_files(str(root))}


def test_the_state_lives_in_the_store_one_watch_per_folder_and_nothing_in_the_folder(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    a = FileIdentity("a.wav", 1, 1)
    with closing(open_store(str(tmp_path / "store.db"))) as store:
        state = WatchState(store, inbox)
        state.open()
        state.started(a, 1, "call-1")
        state.final(a, "done", 1, "call-1", {"file": "a.wav", "credential": "c"})
        with pytest.raises(StoreBusy) as busy:
            WatchState(store, inbox).open()
        assert busy.value.exit_code == ExitCode.USAGE and "another dasctl watch" in busy.value.message
        state.close()
        again = WatchState(store, inbox)
        again.open()  # the lock went with the first one
        assert [(i.relpath, r["credential"]) for i, r in again.unreported()] == [("a.wav", "c")]
        again.reported(a)
        again.close()
        assert watch_files(store, inbox)["a.wav"].reported
    assert list(inbox.iterdir()) == []  # no journal, no lock file


def test_an_old_journal_is_imported_once_and_left_alone(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    for name in ("a.wav", "b.wav", "c.wav"):
        make_file(inbox / name)
    a, b, c = (FileIdentity(n, 8, (inbox / n).stat().st_mtime_ns) for n in ("a.wav", "b.wav", "c.wav"))
    old = inbox / DEFAULT_JOURNAL_NAME
    old.write_text(
        journal_line(a, "started", attempt=1) + journal_line(a, "done", attempt=1, report={"file": "a.wav"})
        + journal_line(a, "reported")
        + journal_line(b, "failed", attempt=2, report={"file": "b.wav", "exit_code": 3, "ok": False})
        + journal_line(c, "started", attempt=1)
        + '{"schema": "dasctl.watch-journal/1", "file": "c.wav", "si'  # torn by a kill -9
    )
    before = old.read_bytes()
    status = StatusLines()
    stand_in = StandIn(lambda p, c, n: success(c))
    code, lines = run_watch(tmp_path, stand_in, observer=status)
    assert code == ExitCode.BATCH_FAILED  # b failed (its line owed, printed now)
    assert [line["file"] for line in lines] == ["b.wav", "c.wav"] and stand_in.attempts == {"c.wav": 1}
    [imported] = [w for w in status.warnings if "imported" in w]
    assert "3 file(s)" in imported and str(old) in imported and "1 unreadable line" in imported
    assert old.read_bytes() == before  # left alone
    status = StatusLines()
    code, lines = run_watch(tmp_path, StandIn(lambda p, c, n: success(c)), observer=status)
    assert lines == [] and not any("imported" in w for w in status.warnings)  # once


# ---------------------------------------------------------------------------------------------- policy


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    policy = RetryPolicy(max_retries=3, base=1.0, cap=8.0)
    assert policy.delay(1, rng=lambda: 0.0) == 0.5 and policy.delay(1, rng=lambda: 1.0) == 1.0
    assert policy.delay(3, rng=lambda: 1.0) == 4.0
    assert policy.delay(10, rng=lambda: 1.0) == 8.0
    assert not policy.gives_up(3) and policy.gives_up(4)


def test_service_health_budget() -> None:
    now = [0.0]
    health = ServiceHealth(budget=10.0, clock=lambda: now[0])
    assert not health.unreachable("refused")
    now[0] = 9.0
    assert not health.unreachable("refused")
    health.reached()
    now[0] = 15.0
    assert not health.unreachable("refused")  # the outage started again at 15
    now[0] = 25.0
    assert health.unreachable("refused")


# ---------------------------------------------------------------------------------------------- runner


def success(call_id: str, credential: str = "cred") -> RegisterOutcome:
    event = events.parse_event(events.RESULT_SUCCESS, ({
        "event": events.RESULT_SUCCESS, "content": "Registration: approved", "authenticity": 0.99,
        "voice_audio_collected": 5.1, "credential": credential},))
    return RegisterOutcome(call_id, event, 7.0, {"finished": 0.1})  # type: ignore[arg-type]


def terminal(call_id: str, name: str) -> RegisterOutcome:
    event = events.parse_event(name, ({"event": name, "content": f"said {name}"},))
    return RegisterOutcome(call_id, event, 3.0, {})  # type: ignore[arg-type]


Script = Callable[[Path, str, int], Any]  # (path, call_id, attempt) -> outcome or raises


class StandIn:
    """A stand-in for register_audio: each file's attempts follow a script; records overlap.

    Like the real session, it reports "connecting" first and "streaming" once the service answered;
    a ServiceUnavailable mentioning "refused" stands for a service that could not be reached at all.
    """

    def __init__(self, script: Script, delay: float = 0.0) -> None:
        self.script = script
        self.delay = delay
        self.attempts: dict[str, int] = {}
        self.running = 0
        self.max_running = 0

    async def __call__(
        self, path: Path, call_id: str, on_progress: Callable[[Progress], None], tap: SessionTap
    ) -> Any:
        n = self.attempts[path.name] = self.attempts.get(path.name, 0) + 1
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            on_progress(Progress("connecting", 0.0, 0.0, 5.0, call_id=call_id))
            await asyncio.sleep(self.delay)
            result = self.script(path, call_id, n)
            # a "connection refused" never got past connecting; anything else reached the service
            if not (isinstance(result, ServiceUnavailable) and "refused" in result.message):
                on_progress(Progress("streaming", 0.0, 1.0, 5.0, call_id=call_id))
            if isinstance(result, BaseException):
                raise result
            return result
        finally:
            self.running -= 1


Ran = tuple[ExitCode | BaseException, list[dict]]


class StatusLines(SilentObserver):
    """Keeps the status lines and warnings a display would show."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.warnings: list[str] = []

    def status(self, message: str) -> None:
        self.lines.append(message)

    def warning(self, message: str) -> None:
        self.warnings.append(message)


def store_of(tmp_path: Path) -> Store:
    """The store every run of a test shares (as the runs of one user share theirs)."""
    return open_store(str(tmp_path / "store.db"))


def run_watch(
    tmp_path: Path, stand_in: Any, observer: Any = None, out: io.StringIO | None = None, **overrides: Any
) -> Ran:
    out = out if out is not None else io.StringIO()
    settings = WatchSettings(root=tmp_path / "in", once=True, settle=0.0,
                             retry=RetryPolicy(max_retries=2, base=0.01), **overrides)
    with closing(store_of(tmp_path)) as store:
        runner = WatchRunner(settings, stand_in, store=store, out=out, observer=observer)
        try:
            code: ExitCode | BaseException = asyncio.run(runner.run())
        except Exception as error:
            code = error
    return code, [json.loads(line) for line in out.getvalue().splitlines()]


def recorded(tmp_path: Path, identity: FileIdentity, state: str, report: dict[str, Any], *,
             reported: bool = False) -> None:
    """What a run killed at some moment left in the store."""
    with closing(store_of(tmp_path)) as store:
        keeper = WatchState(store, tmp_path / "in")
        keeper.open()
        keeper.final(identity, state, 1, "call", report)
        if reported:
            keeper.reported(identity)
        keeper.close()


def by_file(lines: list[dict]) -> dict[str, dict]:
    return {line["file"]: line for line in lines}


def test_once_reports_every_file_once_with_the_right_outcome_and_exit_7(tmp_path: Path) -> None:
    for name in ("good.wav", "spoof.wav", "corrupt.wav", "flaky.wav"):
        make_file(tmp_path / "in" / name)

    def script(path: Path, call_id: str, attempt: int) -> Any:
        if path.name == "spoof.wav":
            return terminal(call_id, events.RESULT_FAIL_SPOOF)
        if path.name == "corrupt.wav":
            return AudioError("corrupt.wav: not a WAV file")
        if path.name == "flaky.wav" and attempt < 3:
            return terminal(call_id, events.ERROR_DAS_PEAK) if attempt == 1 else ServiceUnavailable("dropped")
        return success(call_id)

    stand_in = StandIn(script)
    code, lines = run_watch(tmp_path, stand_in)
    assert code == ExitCode.BATCH_FAILED
    assert len(lines) == 4
    got = by_file(lines)
    assert got["good.wav"]["outcome"]["event"] == "result-success" and got["good.wav"]["credential"] == "cred"
    assert got["good.wav"]["exit_code"] == 0 and got["good.wav"]["error"] is None
    assert got["spoof.wav"]["outcome"]["event"] == "result-fail-spoof" and got["spoof.wav"]["exit_code"] == 5
    assert got["corrupt.wav"]["exit_code"] == 3 and got["corrupt.wav"]["error"]["kind"] == "audio"
    assert got["flaky.wav"]["exit_code"] == 0 and got["flaky.wav"]["attempts"] == 3
    assert stand_in.attempts == {"corrupt.wav": 1, "flaky.wav": 3, "good.wav": 1, "spoof.wav": 1}
    for line in lines:
        assert line["schema"] == "dasctl.watch/1"


def test_retries_stop_at_max_retries(tmp_path: Path) -> None:
    make_file(tmp_path / "in" / "down.wav")
    stand_in = StandIn(lambda p, c, n: terminal(c, events.ERROR_CONSUMER_NOT_READY))
    code, lines = run_watch(tmp_path, stand_in)
    assert code == ExitCode.BATCH_FAILED
    assert stand_in.attempts == {"down.wav": 3}  # 1 + --max-retries 2
    assert lines[0]["exit_code"] == 6 and lines[0]["attempts"] == 3


def test_a_restart_skips_what_is_done_and_a_second_run_prints_nothing(tmp_path: Path) -> None:
    for name in ("a.wav", "b.wav"):
        make_file(tmp_path / "in" / name)
    first = StandIn(lambda p, c, n: success(c))
    assert run_watch(tmp_path, first)[0] == ExitCode.OK
    second = StandIn(lambda p, c, n: success(c))
    code, lines = run_watch(tmp_path, second)
    assert code == ExitCode.OK and lines == [] and second.attempts == {}


def test_unreported_results_are_printed_on_restart_without_running_again(tmp_path: Path) -> None:
    path = make_file(tmp_path / "in" / "a.wav")
    identity = FileIdentity("a.wav", path.stat().st_size, path.stat().st_mtime_ns)
    # killed right after the outcome was durable, before its line was printed
    recorded(tmp_path, identity, "done", {"file": "a.wav", "exit_code": 0, "credential": "kept"})
    stand_in = StandIn(lambda p, c, n: success(c))
    code, lines = run_watch(tmp_path, stand_in)
    assert code == ExitCode.OK and stand_in.attempts == {}
    assert lines == [{"file": "a.wav", "exit_code": 0, "credential": "kept"}]
    assert run_watch(tmp_path, stand_in)[1] == []  # marked reported


def test_lines_replayed_from_the_journal_count_once_in_the_summary(tmp_path: Path) -> None:
    a, b = make_file(tmp_path / "in" / "a.wav"), make_file(tmp_path / "in" / "b.wav")
    for path, reported in ((a, False), (b, True)):  # a run cut short by `| head -n1`
        identity = FileIdentity(path.name, path.stat().st_size, path.stat().st_mtime_ns)
        recorded(tmp_path, identity, "done", {"file": path.name, "exit_code": 0}, reported=reported)
    status = StatusLines()
    code, lines = run_watch(tmp_path, StandIn(lambda p, c, n: success(c)), observer=status)
    assert code == ExitCode.OK and [line["file"] for line in lines] == ["a.wav"]
    assert status.lines[-1].startswith("finished: 1 done, 0 failed, 1 already reported in "), status.lines


def test_once_exits_7_while_a_file_that_failed_earlier_is_still_there(tmp_path: Path) -> None:
    make_file(tmp_path / "in" / "good.wav")
    make_file(tmp_path / "in" / "bad.wav")
    script = lambda p, c, n: AudioError("bad") if p.name == "bad.wav" else success(c)  # noqa: E731
    assert run_watch(tmp_path, StandIn(script))[0] == ExitCode.BATCH_FAILED
    code, lines = run_watch(tmp_path, StandIn(script))
    assert code == ExitCode.BATCH_FAILED and lines == []
    (tmp_path / "in" / "bad.wav").unlink()  # dealt with: every recording now there is enrolled
    assert run_watch(tmp_path, StandIn(script)) == (ExitCode.OK, [])


def test_retry_failed_runs_failed_files_again(tmp_path: Path) -> None:
    make_file(tmp_path / "in" / "a.wav")
    assert run_watch(tmp_path, StandIn(lambda p, c, n: AudioError("bad")))[0] == ExitCode.BATCH_FAILED
    assert run_watch(tmp_path, StandIn(lambda p, c, n: success(c)))[1] == []
    code, lines = run_watch(tmp_path, StandIn(lambda p, c, n: success(c)), retry_failed=True)
    assert code == ExitCode.OK and [line["outcome"]["event"] for line in lines] == ["result-success"]


def test_concurrency_overlaps_sessions_up_to_the_limit(tmp_path: Path) -> None:
    for i in range(12):
        make_file(tmp_path / "in" / f"{i:02}.wav")
    stand_in = StandIn(lambda p, c, n: success(c), delay=0.05)
    code, lines = run_watch(tmp_path, stand_in, concurrency=4)
    assert code == ExitCode.OK and len(lines) == 12
    assert stand_in.max_running == 4


def test_an_auth_error_stops_watch_with_exit_4_and_reports_nothing(tmp_path: Path) -> None:
    make_file(tmp_path / "in" / "a.wav")
    code, lines = run_watch(tmp_path, StandIn(lambda p, c, n: AuthError("token refused")))
    assert isinstance(code, AuthError) and lines == []


def test_an_unreachable_service_past_the_budget_exits_6_and_keeps_the_file_for_later(tmp_path: Path) -> None:
    make_file(tmp_path / "in" / "a.wav")
    stand_in = StandIn(lambda p, c, n: ServiceUnavailable("connection refused"))
    code, lines = run_watch(tmp_path, stand_in, unreachable_budget=0.2)
    assert isinstance(code, ServiceUnavailable) and "unreachable for" in code.message
    assert lines == [] and stand_in.attempts["a.wav"] > 2  # unreachable tries do not use up retries
    later = StandIn(lambda p, c, n: success(c))
    assert run_watch(tmp_path, later)[1][0]["ok"] is True


def test_done_and_failed_files_are_moved_keeping_sub_folders(tmp_path: Path) -> None:
    make_file(tmp_path / "in" / "ok.wav")
    make_file(tmp_path / "in" / "sub" / "bad.wav")
    done, failed = tmp_path / "done", tmp_path / "failed"
    script = lambda p, c, n: AudioError("bad") if p.name == "bad.wav" else success(c)  # noqa: E731
    code, _ = run_watch(tmp_path, StandIn(script), recursive=True, done_dir=done, failed_dir=failed)
    assert code == ExitCode.BATCH_FAILED
    assert (done / "ok.wav").exists() and (failed / "sub" / "bad.wav").exists()
    assert not (tmp_path / "in" / "ok.wav").exists()


def test_a_long_running_watch_forgets_files_that_left_and_never_runs_one_twice(tmp_path: Path) -> None:
    """Finished files moved out (--done-dir) leave watch's memory at the next rescan, so a watch that runs
    for months holds what its folder holds; one that comes back is found in the store, not run again."""
    inbox, done = tmp_path / "in", tmp_path / "done"
    for name in ("a.wav", "b.wav"):
        make_file(inbox / name)
    out = io.StringIO()
    stand_in = StandIn(lambda p, c, n: success(c))
    settings = WatchSettings(root=inbox, settle=0.0, done_dir=done, rescan_interval=0.1)

    async def until(condition: Callable[[], bool]) -> None:
        for _ in range(200):
            if condition():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(out.getvalue())

    async def main(runner: WatchRunner) -> ExitCode:
        task = asyncio.create_task(runner.run())
        await until(lambda: len(out.getvalue().splitlines()) == 2 and not runner.journal.entries)
        assert not runner.lines.printed
        os.rename(done / "a.wav", inbox / "a.wav")  # the same recording, back in the folder
        make_file(inbox / "c.wav")
        await until(lambda: len(out.getvalue().splitlines()) == 3 and (done / "a.wav").exists())
        runner.request_stop("SIGTERM")
        return await task

    with closing(store_of(tmp_path)) as store:
        runner = WatchRunner(settings, stand_in, store=store, out=out)
        assert asyncio.run(main(runner)) == ExitCode.INTERRUPTED
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["file"] for line in lines] == ["a.wav", "b.wav", "c.wav"]
    assert stand_in.attempts == {"a.wav": 1, "b.wav": 1, "c.wav": 1}
    assert runner.totals.skipped == 1  # a.wav, seen again: already done


def test_a_running_watch_counts_a_file_an_earlier_run_finished_once_however_often_it_rescans(
    tmp_path: Path,
) -> None:
    make_file(tmp_path / "in" / "old.wav")
    assert run_watch(tmp_path, StandIn(lambda p, c, n: success(c)))[0] == ExitCode.OK
    stand_in = StandIn(lambda p, c, n: success(c))
    observer = StatusLines()
    settings = WatchSettings(root=tmp_path / "in", settle=0.0, rescan_interval=0.05)

    async def main(runner: WatchRunner) -> ExitCode:
        task = asyncio.create_task(runner.run())
        await asyncio.sleep(1.5)  # a rescan every 50 ms: dozens of them (it was counted at each)
        runner.request_stop("SIGTERM")
        return await task

    with closing(store_of(tmp_path)) as store:
        runner = WatchRunner(settings, stand_in, store=store, out=io.StringIO(), observer=observer)
        assert asyncio.run(main(runner)) == ExitCode.INTERRUPTED
    assert stand_in.attempts == {}
    assert runner.totals.skipped == 1
    assert "1 already reported" in observer.lines[-1], observer.lines


def test_a_stop_request_takes_no_new_files_and_leaves_the_state_consistent(tmp_path: Path) -> None:
    for i in range(6):
        make_file(tmp_path / "in" / f"{i}.wav")
    out = io.StringIO()
    stand_in = StandIn(lambda p, c, n: success(c), delay=0.3)
    settings = WatchSettings(root=tmp_path / "in", once=True, settle=0.0, concurrency=2, grace=5.0)

    async def main(runner: WatchRunner) -> ExitCode:
        task = asyncio.create_task(runner.run())
        await asyncio.sleep(0.1)
        runner.request_stop("SIGTERM")
        return await task

    with closing(store_of(tmp_path)) as store:
        runner = WatchRunner(settings, stand_in, store=store, out=out)
        assert asyncio.run(main(runner)) == ExitCode.INTERRUPTED
        known = watch_files(store, tmp_path / "in")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 2  # the two in flight finished; nothing new was started
    assert sorted(w.state for w in known.values()) == ["done", "done"]
    assert all(w.reported for w in known.values())


def test_a_second_stop_aborts_in_flight_sessions_which_are_not_done(tmp_path: Path) -> None:
    make_file(tmp_path / "in" / "slow.wav")
    out = io.StringIO()
    stand_in = StandIn(lambda p, c, n: success(c), delay=30)
    settings = WatchSettings(root=tmp_path / "in", once=True, settle=0.0)

    async def main(runner: WatchRunner) -> ExitCode:
        task = asyncio.create_task(runner.run())
        await asyncio.sleep(0.1)
        runner.request_stop("SIGINT")
        runner.request_stop("SIGINT")
        return await asyncio.wait_for(task, 5)

    with closing(store_of(tmp_path)) as store:
        runner = WatchRunner(settings, stand_in, store=store, out=out)
        assert asyncio.run(main(runner)) == ExitCode.INTERRUPTED
        known = watch_files(store, tmp_path / "in")
    assert out.getvalue() == ""
    assert known["slow.wav"].state == "aborted" and known["slow.wav"].report is None
    # and the next run does it
    code, lines = run_watch(tmp_path, StandIn(lambda p, c, n: success(c)))
    assert code == ExitCode.OK and len(lines) == 1


def test_a_second_stop_as_the_started_state_lands_leaves_the_file_aborted(tmp_path: Path) -> None:
    """The store's thread writes `started`; the cancel of a second stop reaches the attempt before it
    resumes: the attempt still ends `aborted` (it was left `started`, a CI flake of test_watch_e2e)."""
    make_file(tmp_path / "in" / "a.wav")
    landed = asyncio.Event()

    class SlowToResume(WatchState):
        async def step(self, state: str, identity: FileIdentity, attempt: int, call_id: str,
                       **kwargs: Any) -> None:
            await super().step(state, identity, attempt, call_id, **kwargs)
            if state == "started":
                landed.set()
                await asyncio.sleep(30)  # the cancel arrives here, the row already written

    async def main(runner: WatchRunner) -> ExitCode:
        task = asyncio.create_task(runner.run())
        await asyncio.wait_for(landed.wait(), 10)
        runner.request_stop("SIGINT")
        runner.request_stop("SIGINT")
        return await asyncio.wait_for(task, 10)

    settings = WatchSettings(root=tmp_path / "in", once=True, settle=0.0)
    stand_in = StandIn(lambda p, c, n: success(c))
    with closing(store_of(tmp_path)) as store:
        state = SlowToResume(store, tmp_path / "in")
        runner = WatchRunner(settings, stand_in, store=store, out=io.StringIO(), state=state)
        assert asyncio.run(main(runner)) == ExitCode.INTERRUPTED
        known = watch_files(store, tmp_path / "in")
    assert known["a.wav"].state == "aborted" and stand_in.attempts == {}


def test_a_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    code, _ = run_watch(tmp_path, StandIn(lambda p, c, n: success(c)))
    assert isinstance(code, UsageError)


def test_a_credential_is_kept_when_it_arrives_even_if_the_session_hangs(tmp_path: Path) -> None:
    make_file(tmp_path / "in" / "CUST1.wav")
    out = io.StringIO()
    arrived: asyncio.Event | None = None  # created inside the loop below

    async def hanging(path: Path, call_id: str, on_progress: Callable[[Progress], None], tap: Any) -> Any:
        result = success(call_id, credential="precious").result
        on_progress(Progress("done", 0.5, 7.0, 5.0, event=result, call_id=call_id))
        assert arrived is not None
        arrived.set()
        await asyncio.sleep(60)  # the teardown never finishes

    settings = WatchSettings(root=tmp_path / "in", once=True, settle=0.0, grace=0.1)

    async def main(runner: WatchRunner, store: Store) -> ExitCode:
        nonlocal arrived
        arrived = asyncio.Event()
        task = asyncio.create_task(runner.run())
        await asyncio.wait_for(arrived.wait(), 5)
        for _ in range(100):  # written off the event loop the moment it arrived: wait for that write
            if runner._keeping and all(task.done() for task in runner._keeping.values()):
                break
            await asyncio.sleep(0.05)
        with closing(store_of(tmp_path)) as other:  # durable before any return: another process sees it
            assert (watch_files(other, tmp_path / "in")["CUST1.wav"].report or {})["credential"] == "precious"
            current = other.current("CUST1")
            assert current is not None and current.credential == "precious" and current.origin == "watch"
        runner.request_stop("SIGTERM")
        return await asyncio.wait_for(task, 5)

    with closing(store_of(tmp_path)) as store:
        runner = WatchRunner(settings, hanging, store=store, out=out)
        assert asyncio.run(main(runner, store)) == ExitCode.INTERRUPTED
    [line] = [json.loads(x) for x in out.getvalue().splitlines()]
    assert line["credential"] == "precious" and line["outcome"]["event"] == "result-success"
