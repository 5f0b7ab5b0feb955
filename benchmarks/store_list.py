"""`dasctl credentials list --json` over 100,000 current credentials: wall time of the whole command.

Usage: python benchmarks/store_list.py [--records N] [--runs N] [--check]
Baseline, same run, same file: the sqlite3 command-line tool printing the same rows as JSON (or, when it
is missing, `python -c` running the bare SELECT and printing each row). docs/contributing.md: <= 0.5 s.
The records are written straight into a store made by dasctl (a fresh schema), with a realistic
credential (~600 characters); the audio lives in its own table and is never read by a listing.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 0.5
CREDENTIAL = "eyJ2IjoxLCJtb2RlbF9oYXNoIjoiZGFzY3RsLWVtdWxhdG9yLW1vZGVsLXYxIiwidm9pY2VwcmludCI6WzE1" * 6
SELECT = ("SELECT id, speaker, ok, origin, outcome, credential, model_hash, created_at, call_id, protocol, "
          "profile, service_url, authenticity, voice_seconds, source_path, source_size, source_sha256 "
          "FROM enrollments WHERE ok = 1 AND superseded_at IS NULL ORDER BY speaker")


def fill(path: Path, records: int, made_when_kept: bool = True) -> None:
    from dasctl.store import open_store

    open_store(str(path)).close()  # dasctl makes the schema
    db = sqlite3.connect(path)
    rows = (
        (f"CUST{n:07d}", 1, "register", "result-success", CREDENTIAL + f"{n:07d}", "dasctl-emulator-model-v1",
         "twilio", "local", "http://127.0.0.1:7272", f"{n:08d}-2f59-4016-a434-d65eaa7351c3", 0.97, 5.0,
         f"/calls/2026/11/CUST{n:07d}.wav", 960044, f"{n:064x}", "2026-11-25T17:54:42.976Z", 40000)
        for n in range(records)
    )
    with db:
        db.executemany(
            "INSERT INTO enrollments (speaker, ok, origin, outcome, credential, model_hash, protocol, "
            "profile, service_url, call_id, authenticity, voice_seconds, source_path, source_size, "
            "source_sha256, "
            "created_at, audio_size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.close()
    if made_when_kept:
        # what record_enrollment stores with each success (migration m003): its listing line
        from dasctl.results import json_line
        from dasctl.store.records import credential_document

        store = open_store(str(path))
        lines = [(json_line(credential_document(r)), r.id) for r in store.list_current()]
        store.close()
        db = sqlite3.connect(path)
        with db:
            db.executemany("UPDATE enrollments SET listing = ? WHERE id = ?", lines)
        db.close()


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wall(command: list[str], env: dict[str, str], output: Path) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, lines): CPU time too, since a shared machine stretches wall time.
    stdout goes to a file (`> credentials.ndjson`), so that what is timed is the command, not how fast
    this script could read 100 MB from a pipe."""
    cpu, started = children_cpu(), time.perf_counter()
    with output.open("wb") as out:
        subprocess.run(command, stdout=out, stderr=subprocess.PIPE, env=env, check=True)
    elapsed, used = time.perf_counter() - started, children_cpu() - cpu
    with output.open("rb") as written:
        lines = sum(block.count(b"\n") for block in iter(lambda: written.read(1 << 20), b""))
    return elapsed, used, lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--old-rows", action="store_true",
                        help="rows kept before listing lines were stored (SQLite builds each line)")
    args = parser.parse_args()
    dasctl = str(Path(sys.executable).with_name("dasctl"))
    with tempfile.TemporaryDirectory(prefix="dasctl-bench-list-") as temp:
        path = Path(temp) / "store.db"
        os.environ["DASCTL_CONFIG_DIR"] = temp  # the store's implicit key goes there, not in your home
        fill(path, args.records, made_when_kept=not args.old_rows)
        env = {**os.environ, "DASCTL_CONFIG_DIR": temp, "NO_COLOR": "1"}
        ours_command = [dasctl, "credentials", "list", "--json", "--store", str(path)]
        if shutil.which("sqlite3"):
            baseline_name = "sqlite3 -json (same rows)"
            baseline_command = ["sqlite3", "-json", str(path), SELECT]
        else:
            baseline_name = "python -c bare SELECT"
            script = ("import sqlite3,sys\n"
                      f"for r in sqlite3.connect(sys.argv[1]).execute({SELECT!r}): print(r)")
            baseline_command = [sys.executable, "-c", script, str(path)]
        ours, baseline, ours_cpu, base_cpu, lines = [], [], [], [], 0
        for _ in range(args.runs):  # interleaved: a noisy neighbour hurts both alike
            seconds, cpu, lines = wall(ours_command, env, Path(temp) / "out")
            ours.append(seconds)
            ours_cpu.append(cpu)
            seconds, cpu, _ = wall(baseline_command, env, Path(temp) / "out")
            baseline.append(seconds)
            base_cpu.append(cpu)
        checks = []
        for _ in range(3):  # what an open costs when the file changed since its last good check
            db = sqlite3.connect(path)
            started = time.perf_counter()
            db.execute("PRAGMA quick_check(5)").fetchall()
            checks.append(time.perf_counter() - started)
            db.close()
    ours_s, base_s = statistics.median(ours), statistics.median(baseline)
    print(f"dasctl credentials list --json  median {ours_s:6.3f} s wall, "
          f"{statistics.median(ours_cpu):6.3f} s CPU  ({lines} lines, {args.records} records)")
    print(f"{baseline_name:31s} median {base_s:6.3f} s wall, {statistics.median(base_cpu):6.3f} s CPU")
    print(f"PRAGMA quick_check (on open, when the file changed) median {statistics.median(checks):6.3f} s")
    print(f"ratio dasctl/baseline: {ours_s / base_s:.2f}x   target: <= {TARGET_S:g} s -> "
          f"{'met' if ours_s <= TARGET_S else 'MISSED'}")
    return 1 if args.check and ours_s > TARGET_S else 0


if __name__ == "__main__":
    sys.exit(main())
