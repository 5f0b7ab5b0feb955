"""What encryption at rest costs a store write (SQLite): median ms of `record_enrollment` with 5 s of audio,
sealed with AES-256-GCM, against the same store code with the cipher taken out (the values written as
they are, in the same format), in the same run, alternated so that a noisy neighbour hurts both alike.

Usage: python benchmarks/store_encryption.py [--records N] [--check]
Target: encrypted <= 1.3 x unencrypted. With --check, exits 1 when it is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 1.3


def _clear_sealer(active: int) -> object:
    """A Sealer that writes what it is given: the store's work without the cipher."""
    import base64

    from dasctl.store.crypto import BINARY_MAGIC, NONCE_BYTES, TEXT_PREFIX, Sealer

    class ClearSealer(Sealer):
        def seal(self, plaintext: bytes, aad: bytes) -> bytes:
            return BINARY_MAGIC + active.to_bytes(4, "big") + bytes(NONCE_BYTES) + plaintext

        def seal_text(self, plaintext: str, aad: bytes) -> str:
            return f"{TEXT_PREFIX}{active}:" + base64.b64encode(plaintext.encode()).decode("ascii")

    return ClearSealer({active: bytes(32)}, active)


def write_times(path: Path, records: int, *, encrypted: bool) -> list[float]:
    from store_write import sample_record  # the same rows as store_write.py (benchmarks/ is on sys.path)

    from dasctl.store import open_store

    store = open_store(str(path))
    if not encrypted:
        store._sealer = _clear_sealer(store._sealer.active)  # type: ignore[attr-defined]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dasctl-bench-seal-", dir=os.environ.get("TMPDIR")) as temp:
        os.environ["DASCTL_CONFIG_DIR"] = temp  # the store's implicit key goes there, not in your home
        os.environ.setdefault("DASCTL_STORE_KEY", "YmVuY2htYXJrLWtleS1iZW5jaG1hcmsta2V5LWJlbmM=")
        sealed, clear = [], []
        for round_ in range(3):
            sealed += write_times(Path(temp) / f"sealed-{round_}.db", args.records // 3, encrypted=True)
            clear += write_times(Path(temp) / f"clear-{round_}.db", args.records // 3, encrypted=False)
    sealed_ms, clear_ms = statistics.median(sealed) * 1000, statistics.median(clear) * 1000
    ratio = sealed_ms / clear_ms
    print(f"record_enrollment, encrypted    median {sealed_ms:6.2f} ms  ({len(sealed)} records)")
    print(f"record_enrollment, no cipher    median {clear_ms:6.2f} ms")
    print(f"ratio {ratio:.2f} x (target <= {TARGET_RATIO} x)")
    return 1 if args.check and ratio > TARGET_RATIO else 0


if __name__ == "__main__":
    sys.exit(main())
