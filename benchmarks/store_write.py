"""Store write per enrollment (SQLite): median ms of `record_enrollment` with 5 s of audio.

Usage: python benchmarks/store_write.py [--records N] [--check]
Baseline, same run, same disk: a plain sqlite3 INSERT of the same row (the same columns and audio blob,
WAL + synchronous=FULL, one transaction per row), so the ratio is what the store adds on top of SQLite.
Target (docs/contributing.md): median <= 5 ms. With --check, exits 1 when it is missed.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_MS = 5.0
AUDIO = os.urandom(8000 * 5)  # 5 s of 8 kHz mu-law
CREDENTIAL = "eyJ2IjoxLCJtb2RlbF9oYXNoIjoiZGFzY3RsIn0" * 40


def sample_record(n: int) -> Any:
    """The n-th enrollment a benchmark writes: a realistic row, 5 s of audio (also store_encryption.py)."""
    from dasctl.store import EnrollmentRecord

    return EnrollmentRecord(
        speaker=f"CUST{n % 500}", ok=True, credential=CREDENTIAL, model_hash="model-v1",
        profile="local", service_url="http://127.0.0.1:7272", call_id=f"call-{n}", protocol="twilio",
        authenticity=0.97, voice_seconds=5.0, source_path=f"/calls/CUST{n}.wav", source_size=960044,
        source_sha256="ab" * 32, audio=AUDIO, document={"schema": "dasctl.register/1", "n": n},
    )


def store_times(path: Path, records: int) -> list[float]:
    from dasctl.store import open_store

    store = open_store(str(path))
    times = []
    try:
        for n in range(records):
            record = sample_record(n)
            started = time.perf_counter()
            store.record_enrollment(record)
            times.append(time.perf_counter() - started)
    finally:
        store.close()
    return times


def baseline_times(path: Path, records: int) -> list[float]:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, speaker TEXT, credential TEXT, model_hash TEXT, "
               "call_id TEXT, source_sha256 TEXT, document TEXT, created_at TEXT, audio BLOB)")
    times = []
    for n in range(records):
        started = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO rows (speaker, credential, model_hash, call_id, source_sha256, document, "
                   "created_at, audio) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (f"CUST{n % 500}", CREDENTIAL, "model-v1", f"call-{n}", "ab" * 32, '{"n":1}',
                    "2026-11-25T00:00:00.000Z", AUDIO))
        db.execute("COMMIT")
        times.append(time.perf_counter() - started)
    db.close()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dasctl-bench-store-", dir=os.environ.get("TMPDIR")) as temp:
        os.environ["DASCTL_CONFIG_DIR"] = temp  # the store's implicit key goes there, not in your home
        os.environ.setdefault("DASCTL_STORE_KEY", "YmVuY2htYXJrLWtleS1iZW5jaG1hcmsta2V5LWJlbmM=")
        # alternate the two, so that a noisy neighbour hurts both alike
        ours, plain = [], []
        for round_ in range(3):
            ours += store_times(Path(temp) / f"store-{round_}.db", args.records // 3)
            plain += baseline_times(Path(temp) / f"plain-{round_}.db", args.records // 3)
    ours_ms, plain_ms = statistics.median(ours) * 1000, statistics.median(plain) * 1000
    print(f"record_enrollment (5 s audio)   median {ours_ms:6.2f} ms  p90 "
          f"{statistics.quantiles(ours, n=10)[-1] * 1000:6.2f} ms  ({len(ours)} records)")
    print(f"plain sqlite3 INSERT (baseline) median {plain_ms:6.2f} ms")
    print(f"ratio store/plain: {ours_ms / plain_ms:.2f}x   target: median <= {TARGET_MS:g} ms "
          f"-> {'met' if ours_ms <= TARGET_MS else 'MISSED'}")
    return 1 if args.check and ours_ms > TARGET_MS else 0


if __name__ == "__main__":
    sys.exit(main())
