"""Where the suite's CPU goes, per test file: an opt-in pytest plugin (not loaded by default).

    make test PYTEST_ARGS="-q -p no:cacheprovider -p tests.cpu_accounting"

Around each test it reads getrusage() of the process running it (the xdist worker, or pytest) for itself
and for its children that have ended (the dasctl processes a test runs; an emulator counts where it is
stopped), and at the end prints the files that cost most, and each worker's own CPU: the worker figure
is how a thread a test left spinning shows (docs/contributing.md). CPU_ACCOUNTING_DIR keeps the records
(one JSON line per test, a file per worker); by default a new directory under the system's temporary one,
named at the end.
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

_DIR = "CPU_ACCOUNTING_DIR"


def _cpu() -> tuple[float, float]:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def pytest_configure(config: pytest.Config) -> None:
    if not os.environ.get(_DIR):  # set once by the controller; the workers inherit it
        os.environ[_DIR] = tempfile.mkdtemp(prefix="dasctl-cpu-accounting-")
    Path(os.environ[_DIR]).mkdir(parents=True, exist_ok=True)


def _record(entry: dict[str, object]) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(Path(os.environ[_DIR]) / f"{worker}.jsonl", "a") as records:
        records.write(json.dumps(entry) + "\n")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    own, children = _cpu()
    began = time.time()
    yield
    own_after, children_after = _cpu()
    _record({"test": item.nodeid, "own": own_after - own, "children": children_after - children,
             "began": began, "ended": time.time()})


def pytest_sessionfinish(session: pytest.Session) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER") or not session.config.pluginmanager.hasplugin("dsession"):
        own, _ = _cpu()
        _record({"test": "<worker>", "own": own, "children": 0.0})


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    files: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    workers: list[float] = []
    for records in sorted(Path(os.environ[_DIR]).glob("*.jsonl")):
        for line in records.read_text().splitlines():
            entry = json.loads(line)
            if entry["test"] == "<worker>":
                workers.append(entry["own"])
                continue
            totals = files[entry["test"].split("::")[0]]
            totals[0] += entry["own"]
            totals[1] += entry["children"]
    write = terminalreporter.write_line
    terminalreporter.section("CPU by test file (own + children, seconds)")
    for name, (own, children) in sorted(files.items(), key=lambda item: -sum(item[1]))[:15]:
        write(f"{own + children:7.1f}  {name}  (own {own:.1f})")
    write(f"{sum(map(sum, files.values())):7.1f}  all {len(files)} files; the workers' own CPU: "
          + ", ".join(f"{cpu:.1f}" for cpu in sorted(workers, reverse=True)))
    _write_tail(write)
    write(f"records: {os.environ[_DIR]}")


def _write_tail(write: Callable[[str], None]) -> None:
    """When each worker ran its last test, and the tests still running in the run's last minute: a long
    test that starts late sets the end of the run, whatever the CPU."""
    ends: dict[str, float] = {}
    tests: list[tuple[float, float, str]] = []
    for records in sorted(Path(os.environ[_DIR]).glob("*.jsonl")):
        for line in records.read_text().splitlines():
            entry = json.loads(line)
            if "began" in entry:
                ends[records.stem] = max(ends.get(records.stem, 0.0), entry["ended"])
                tests.append((entry["began"], entry["ended"], entry["test"]))
    if not tests:
        return
    first = min(began for began, _, _ in tests)
    last = max(ended for _, ended, _ in tests)
    write("the workers' last test ended at (s after the first began): "
          + ", ".join(f"{end - first:.0f}" for end in sorted(ends.values())))
    for began, ended, name in sorted(tests, key=lambda test: test[1]):
        if ended > last - 60 and ended - began > 5:
            write(f"  {began - first:5.0f} -> {ended - first:5.0f}  {name}")
