"""`dasctl reenroll -j 8 --speed 0` of 200 speakers against `watch --once -j 8 --speed 0` on the same audio.

Usage: python benchmarks/reenroll_throughput.py [--speakers 200] [--concurrency 8]

Makes SPEAKERS recordings (the cuts watch_throughput.py makes) under benchmarks/.work/reenroll/, puts one
speaker per recording in a fresh credential store (model `old`, the recording's 8 kHz mu-law as the kept
enrollment audio, written through the store's API), starts `dasctl serve --model-hash old --model-hash
new`, then in the same run times:
- reenroll: one `dasctl reenroll --model-hash new` process for every speaker (the kept audio, no decoding);
- baseline: one `dasctl watch DIR --once` process enrolling the same recordings from the WAV files.
Prints speakers/s and files/s, the ratio, and checks that every speaker was re-enrolled exactly once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from local_emulator import running_emulator
from watch_throughput import make_recordings, run_measured

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / ".work" / "reenroll"


def seed_store(config_dir: Path, recordings: list[Path]) -> None:
    """One speaker per recording, enrolled with model `old`, its mu-law kept (the store's own API)."""
    from dasctl.audio import open_audio
    from dasctl.store import EnrollmentRecord, open_store

    store = open_store(None, {"DASCTL_CONFIG_DIR": str(config_dir)})
    try:
        for path in recordings:
            with open_audio(path) as audio:
                kept = b"".join(audio.chunks())
            store.record_enrollment(EnrollmentRecord(
                speaker=path.stem, ok=True, origin="register", outcome="result-success",
                credential="seeded", model_hash="old", call_id=str(uuid.uuid4()), protocol="twilio",
                source_path=str(path), audio=kept,
            ))
    finally:
        store.close()


def count_reenrolled(config_dir: Path) -> tuple[int, int]:
    """(speakers now current with `new`, re-enrollment records kept): equal when each was done once."""
    from dasctl.store import EnrollmentRecord, open_store

    store = open_store(None, {"DASCTL_CONFIG_DIR": str(config_dir)})
    try:
        current = list(store.list_current(model_hash="new"))
        records = sum(
            1
            for record in current
            for entry in store.history(record.speaker)
            if isinstance(entry, EnrollmentRecord) and entry.origin == "reenroll" and entry.ok
        )
        return len(current), records
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speakers", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    shutil.rmtree(WORK, ignore_errors=True)
    inbox = WORK / "inbox"
    recordings = make_recordings(inbox, args.speakers)
    config_dir = WORK / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    seed_store(config_dir, recordings)
    models = ("--model-hash", "old", "--model-hash", "new")
    with running_emulator(*models, log=WORK / "emulator.log") as emulator:
        env = {**os.environ, "DASCTL_PROFILE": "local", "DASCTL_URL": emulator.url,
               "DASCTL_CONFIG_DIR": str(config_dir), "DASCTL_MODEL_HASH": "new", "NO_COLOR": "1"}
        dasctl = [sys.executable, "-m", "dasctl"]
        # warm the token cache and the page cache so both sides start equal
        subprocess.run([*dasctl, "register", "--speed", "0", "--no-store", str(recordings[0])], env=env,
                       capture_output=True, check=False)

        reenroll_wall, reenroll_code, reenroll_rss = run_measured(
            [*dasctl, "reenroll", "--model-hash", "new", "-j", str(args.concurrency), "--speed", "0",
             "--json"],
            env, WORK / "reenroll.out",
        )
        lines = [json.loads(line) for line in (WORK / "reenroll.out").read_text().splitlines() if line]
        reenrolled = sum(1 for line in lines if line.get("status") == "reenrolled")

        watch_wall, watch_code, watch_rss = run_measured(
            [*dasctl, "watch", str(inbox), "--once", "--concurrency", str(args.concurrency), "--speed", "0",
             "--settle", "0", "--journal", str(WORK / "journal.jsonl")],
            env, WORK / "watch.out",
        )
        watched = [json.loads(line) for line in (WORK / "watch.out").read_text().splitlines() if line]
        enrolled = sum(1 for line in watched if line.get("ok"))

    current, records = count_reenrolled(config_dir)
    reenroll_rate = len(recordings) / reenroll_wall
    watch_rate = len(recordings) / watch_wall
    print(f"speakers:             {len(recordings)} x 6-8 s of speech, --speed 0, {os.cpu_count()} CPUs")
    print(f"reenroll -j {args.concurrency}:          {reenroll_wall:6.2f} s  "
          f"{reenroll_rate:6.2f} speakers/s  "
          f"exit {reenroll_code}, {reenrolled}/{len(lines)} re-enrolled, peak RSS {reenroll_rss:.0f} MB")
    print(f"watch --once -j {args.concurrency}:     {watch_wall:6.2f} s  {watch_rate:6.2f} files/s  "
          f"exit {watch_code}, {enrolled}/{len(watched)} enrolled, peak RSS {watch_rss:.0f} MB")
    print(f"ratio:                {reenroll_rate / watch_rate:.2f}x  (reenroll / watch, same audio)")
    print(f"store:                {current} speakers current with `new`, {records} re-enrollment records")
    return 0 if reenroll_code == 0 and current == records == len(recordings) else 1


if __name__ == "__main__":
    raise SystemExit(main())
