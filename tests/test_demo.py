"""`make demo` as a new user runs it: it ends on the enrollment, and a refusal reads as expected."""

from __future__ import annotations

import os
import subprocess

from tests.conftest import ROOT


def test_the_demo_ends_on_success_with_the_credential_kept():
    env = {key: value for key, value in os.environ.items() if not key.startswith("DASCTL_")}
    run = subprocess.run(["bash", "scripts/demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=180, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout.rstrip().splitlines()
    assert out[-2].startswith("Done: the speaker is enrolled. The credential is kept in .demo/credential")
    assert "-> exit code 5, as expected: the service refused a recording that is not a live voice." in out
    assert "dasctl: error:" not in run.stdout + run.stderr
    assert (ROOT / ".demo" / "credential.json").stat().st_mode & 0o777 == 0o600
