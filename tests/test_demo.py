"""`make demo` as a new user runs it: it ends on the enrollment kept in the store and verified, and a
refusal reads as expected."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_the_demo_ends_on_success_with_the_credential_kept():
    env = {key: value for key, value in os.environ.items() if not key.startswith("DASCTL_")}
    run = subprocess.run(["bash", "scripts/demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=180, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout.rstrip().splitlines()
    done = out.index("Done: speaker speech-a-8k-mono is enrolled and verified. Its credential, model hash "
                     "and enrollment audio are")
    assert len(out) - done == 4, out[done:]
    assert "kept in the credential store (.demo/config/store.db" in out[done + 1]
    assert "tests/data/speech-a-8k-mono.wav: verified" in out
    # the store holds the enrollment (tab-separated when piped) and the verification
    listed = [line for line in out if line.startswith("speech-a-8k-mono\t")]
    assert len(listed) == 1 and "\tdasctl-emulator-model-v1\t" in listed[0]
    assert "-> exit code 5, as expected: the service refused a recording that is not a live voice." in out
    assert "dasctl: error:" not in run.stdout + run.stderr
    assert (ROOT / ".demo" / "credential.json").stat().st_mode & 0o777 == 0o600
