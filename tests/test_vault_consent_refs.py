"""Consent references: `register --consent REF` and `watch --consent-from REGEX|FILE` keep the reference
with the enrollment; `credentials show`, `history` and `export` show it; `import` keeps it, on SQLite and a
real PostgreSQL server. Real emulator, real stores, the real CLI."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from dasctl.store import open_store
from tests.conftest import DATA, Emulator

SPEECH = DATA / "speech-a-8k-mono.wav"
FAST = ["--once", "--speed", "0", "--settle", "0", "--json"]
Run = Callable[..., subprocess.CompletedProcess[Any]]


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _sessions(emulator: Emulator, since: int = 0) -> list[str]:
    """The register and verify sessions the emulator ran after `since` (one log line each when it ends)."""
    return re.findall(r"session (?:register|verify) \S+ (\S+):", emulator.output(since))


@pytest.mark.slow
def test_register_keeps_the_consent_and_show_history_export_import_carry_it(
    dasctl: Run, emulator: Emulator, tmp_path: Path, postgres_store_url: str
) -> None:
    path = str(tmp_path / "s.db")
    recording = tmp_path / "CUST1.wav"
    shutil.copy(SPEECH, recording)
    env = emulator.client_env()
    done = dasctl("register", "--speed", "0", "-q", "--json", "--consent", " FORM-2026-0042 ",
                  "--store", path, str(recording), env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["stored"]["consent"] == "FORM-2026-0042"  # stripped
    # a later enrollment without one: the history tells them apart
    again = dasctl("register", "--speed", "0", "-q", "--json", "--store", path, str(recording), env=env)
    assert again.returncode == 0, again.stderr
    assert "consent" not in json.loads(again.stdout)["stored"]

    shown = dasctl("credentials", "show", "CUST1", "--store", path)
    assert shown.returncode == 0 and re.search(r"^consent\s+-$", shown.stdout, re.M), shown.stdout
    history = dasctl("credentials", "history", "CUST1", "--json", "--store", path)
    assert [line["consent"] for line in _lines(history.stdout)] == ["FORM-2026-0042", None]
    table = dasctl("credentials", "history", "CUST1", "--store", path).stdout.splitlines()
    assert table[0].split("\t")[-1] == "FORM-2026-0042" and table[1].split("\t")[-1] == "-", table

    exported = dasctl("credentials", "export", "--store", path)
    assert exported.returncode == 0, exported.stderr
    assert [line["consent"] for line in _lines(exported.stdout)] == ["FORM-2026-0042", None]
    as_csv = dasctl("credentials", "export", "--format", "csv", "--columns", "speaker,consent",
                    "--store", path)
    assert list(csv.reader(io.StringIO(as_csv.stdout))) == [
        ["speaker", "consent"], ["CUST1", "FORM-2026-0042"], ["CUST1", ""]]

    # moved whole, into a new SQLite store and into PostgreSQL: the consent travels
    whole = dasctl("credentials", "export", "--with-credential", "--with-audio", "--store", path)
    for target in (str(tmp_path / "moved.db"), postgres_store_url):
        imported = dasctl("credentials", "import", "-", "--store", target, input=whole.stdout)
        assert imported.returncode == 0, imported.stderr
        moved = dasctl("credentials", "history", "CUST1", "--json", "--store", target)
        assert [line["consent"] for line in _lines(moved.stdout)] == ["FORM-2026-0042", None], target
        again_in = dasctl("credentials", "import", "-", "--store", target, input=whole.stdout)
        assert again_in.returncode == 0 and "0 new" in again_in.stderr, again_in.stderr
    assert dasctl("credentials", "export", "--store", postgres_store_url).stdout == exported.stdout


def test_a_bad_consent_is_one_usage_error_before_any_session(
    dasctl: Run, module_emulator: Emulator, tmp_path: Path
) -> None:
    emulator, since = module_emulator, module_emulator.mark()
    path = str(tmp_path / "s.db")
    env = emulator.client_env()
    for value, said in (("  ", "--consent is empty"), ("A\nB", "holds a control character"),
                        ("x" * 201, "at most 200")):
        refused = dasctl("register", "--speed", "0", "--speaker", "C1", "--consent", value, "--store", path,
                         str(SPEECH), env=env)
        assert refused.returncode == 2 and said in refused.stderr, refused.stderr
        assert refused.stdout == "" and "Traceback" not in refused.stderr
        assert refused.stderr.count("dasctl: error:") == 1
    both = dasctl("register", "--no-store", "--consent", "F1", str(SPEECH), env=env)
    assert both.returncode == 2 and "--no-store keeps nothing" in both.stderr
    line = {"schema": "dasctl.credential/1", "speaker": "C2", "ok": False, "consent": 42}
    imported = dasctl("credentials", "import", "-", "--store", path, input=json.dumps(line) + "\n")
    assert imported.returncode == 7 and ":1: not imported: consent must be a string" in imported.stderr
    assert _sessions(emulator, since) == []


def test_watch_takes_the_consent_from_the_file_name(
    dasctl: Run, module_emulator: Emulator, tmp_path: Path
) -> None:
    emulator, since = module_emulator, module_emulator.mark()
    inbox = tmp_path / "calls"
    inbox.mkdir()
    for name in ("CUST1_C-11.wav", "CUST2.wav"):
        shutil.copy(SPEECH, inbox / name)
    done = dasctl("watch", str(inbox), *FAST, "--speaker-from", r"^(CUST\d+)",
                  "--consent-from", r"_(?P<consent>C-\d+)", env=emulator.client_env())
    assert done.returncode == 7, done.stderr
    lines = {line["file"]: line for line in _lines(done.stdout)}
    assert lines["CUST1_C-11.wav"]["ok"] and lines["CUST1_C-11.wav"]["consent"] == "C-11"
    assert lines["CUST1_C-11.wav"]["stored"]["consent"] == "C-11"
    # no reference: fails at once, never sent, not retried
    missing = lines["CUST2.wav"]
    assert not missing["ok"] and missing["error"]["kind"] == "consent" and missing["attempts"] == 1
    assert "does not match --consent-from" in missing["error"]["message"] and "credential" in missing
    assert missing["credential"] is None
    assert "1 done, 1 failed" in done.stderr
    assert len(_sessions(emulator, since)) == 1
    with closing(open_store()) as store:
        current = store.current("CUST1", reveal=False)
        assert current is not None and current.consent == "C-11"
        assert store.current("CUST2") is None
    # a pattern without a group: the whole match is the reference
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(SPEECH, other / "CUST3-GDPR7.wav")
    whole = dasctl("watch", str(other), *FAST, "--consent-from", r"GDPR\d+", env=emulator.client_env())
    assert whole.returncode == 0, whole.stderr
    assert _lines(whole.stdout)[0]["consent"] == "GDPR7"


def test_watch_takes_the_consent_from_a_list(dasctl: Run, emulator: Emulator, tmp_path: Path) -> None:
    inbox = tmp_path / "calls"
    inbox.mkdir()
    for name in ("0412-CUST1.wav", "0413-CUST2.wav", "0414-CUST3.wav", "0415-CUST4.wav"):
        shutil.copy(SPEECH, inbox / name)
    consents = tmp_path / "consents.csv"
    consents.write_text(
        "file,consent\n"            # a CRM export's header names no recording: harmless
        "# signed forms, November\n"
        "\n"
        "0412-CUST1.wav,FORM-1\n"   # by file name
        '0413-CUST2,"FORM 2, page 1"\n'  # by stem, quoted as CSV quotes
        "CUST3\tCASE-3\n"           # by speaker id, tab-separated
    )
    done = dasctl("watch", str(inbox), *FAST, "--speaker-from", r"-(CUST\d+)", "--consent-from",
                  str(consents), env=emulator.client_env())
    assert done.returncode == 7, done.stderr
    lines = {line["speaker"]: line for line in _lines(done.stdout)}
    assert {s: lines[s].get("consent") for s in lines} == {
        "CUST1": "FORM-1", "CUST2": "FORM 2, page 1", "CUST3": "CASE-3", "CUST4": None}
    assert lines["CUST4"]["error"]["kind"] == "consent"
    assert f"no consent reference for it in --consent-from {consents}" in lines["CUST4"]["error"]["message"]
    shown = dasctl("credentials", "show", "CUST2", "--json")
    assert json.loads(shown.stdout)["consent"] == "FORM 2, page 1"
    # the list given its missing line, the failed file runs again and is kept with its reference
    consents.write_text(consents.read_text() + "CUST4,FORM-4\n")
    retried = dasctl("watch", str(inbox), *FAST, "--retry-failed", "--speaker-from", r"-(CUST\d+)",
                     "--consent-from", str(consents), env=emulator.client_env())
    assert retried.returncode == 0, retried.stderr
    (four,) = _lines(retried.stdout)
    assert four["speaker"] == "CUST4" and four["ok"] and four["consent"] == "FORM-4"
    # the dry run says which file a run would fail for want of a reference
    (inbox / "0416-CUST5.wav").write_bytes(SPEECH.read_bytes())
    plan = dasctl("watch", str(inbox), "--dry-run", "--json", "--speaker-from", r"-(CUST\d+)",
                  "--consent-from", str(consents))
    assert plan.returncode == 0, plan.stderr
    (five,) = [line for line in _lines(plan.stdout) if line["file"] == "0416-CUST5.wav"]
    assert five["action"] == "skip" and "no consent reference" in five["reason"]


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("CUST1\n", "line 1: expected NAME,REFERENCE"),
        ("a.wav,F1\n\nb.wav,\n", "line 3: expected NAME,REFERENCE"),
        ("a.wav,F1\na.wav,F2\n", "line 2: 'a.wav' has two references ('F1' and 'F2')"),
        (b"a.wav,F\xff\n", "not UTF-8 text"),
    ],
)
def test_a_bad_consent_list_is_one_usage_error(
    dasctl: Run, tmp_path: Path, content: str | bytes, said: str
) -> None:
    inbox = tmp_path / "calls"
    inbox.mkdir()
    shutil.copy(SPEECH, inbox / "a.wav")
    listing = tmp_path / "consents.csv"
    if isinstance(content, bytes):
        listing.write_bytes(content)
    else:
        listing.write_text(content)
    refused = dasctl("watch", str(inbox), *FAST, "--consent-from", str(listing))
    assert refused.returncode == 2, refused.stderr
    assert said in refused.stderr and refused.stderr.count("dasctl: error:") == 1, refused.stderr
    assert refused.stdout == "" and "Traceback" not in refused.stderr


def test_a_bad_consent_pattern_or_path_is_one_usage_error(dasctl: Run, tmp_path: Path) -> None:
    inbox = tmp_path / "calls"
    inbox.mkdir()
    for value, said in (
        ("(?P<consent>[", "is neither a file nor a valid regular expression"),
        (str(tmp_path / "nope.csv"), "nope.csv: no such file"),
        (str(inbox), "is not a regular file"),
        ("", "--consent-from is empty"),
    ):
        refused = dasctl("watch", str(inbox), *FAST, "--consent-from", value)
        assert refused.returncode == 2 and said in refused.stderr, (value, refused.stderr)
        assert refused.stderr.count("dasctl: error:") == 1 and "Traceback" not in refused.stderr
    both = dasctl("watch", str(inbox), *FAST, "--no-store", "--consent-from", "C-[0-9]+")
    assert both.returncode == 2 and "--no-store keeps none" in both.stderr


def test_a_store_from_before_consent_lists_every_line_with_the_same_fields(
    dasctl: Run, tmp_path: Path
) -> None:
    """Migration m007: a success kept before it has its `credentials list --json` line made then (without
    `consent`); the migration gives it the field, so every line has the same fields in the same order."""
    import sqlite3

    from dasctl.results import json_line
    from dasctl.store import EnrollmentRecord
    from dasctl.store.migrations import MIGRATIONS, statements
    from dasctl.store.records import CREDENTIAL_FIELDS, credential_document
    from dasctl.store.sqlite import SQLITE_TYPES

    path = tmp_path / "old.db"
    old = [(name, function) for name, function in MIGRATIONS if name < "m007"]
    record = EnrollmentRecord(speaker="OLD1", ok=True, model_hash="m", id=1,
                              created_at="2026-01-01T00:00:00.000Z")
    line = json_line({k: v for k, v in credential_document(record).items() if k != "consent"})
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE _dasctl_migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
        for name, function in old:
            for statement in statements(name, function, SQLITE_TYPES):
                db.execute(statement)
            db.execute("INSERT INTO _dasctl_migrations VALUES (?, '2026-01-01T00:00:00.000Z')", (name,))
        db.execute("INSERT INTO enrollments (speaker, ok, origin, model_hash, created_at, listing) "
                   "VALUES ('OLD1', 1, 'register', 'm', '2026-01-01T00:00:00.000Z', ?)", (line,))
    db.close()
    listed = dasctl("credentials", "list", "--json", "--store", str(path))
    assert listed.returncode == 0, listed.stderr
    (document,) = _lines(listed.stdout)
    assert list(document) == ["schema", *CREDENTIAL_FIELDS] and document["consent"] is None
    assert listed.stdout == json_line(credential_document(record)) + "\n"


def test_verify_of_an_opted_out_customers_record_file_is_refused_before_any_session(
    dasctl: Run, module_emulator: Emulator, tmp_path: Path
) -> None:
    """The customer's record (`register -o`) outlives the opt-out; verify --credential refuses it too."""
    from dasctl.client import Client
    from dasctl.errors import DasctlError

    emulator, since = module_emulator, module_emulator.mark()
    path = str(tmp_path / "s.db")
    record = tmp_path / "CUST8.credential.json"
    done = dasctl("register", "--speed", "0", "-q", "--speaker", "CUST8", "--store", path, "-o", str(record),
                  str(SPEECH), env=emulator.client_env())
    assert done.returncode == 0, done.stderr
    assert dasctl("credentials", "optout", "CUST8", "--store", path).returncode == 0
    refused = dasctl("verify", "--credential", str(record), "--speed", "0", "--store", path, str(SPEECH),
                     env=emulator.client_env())
    assert refused.returncode == 5 and "the customer CUST8 opted out on" in refused.stderr, refused.stderr
    assert refused.stdout == "" and refused.stderr.count("dasctl: error:") == 1
    with pytest.raises(DasctlError) as raised:
        Client(profile="local", url=emulator.url, store=path).verify(SPEECH, credential=record, speed=0)
    assert raised.value.exit_code == 5
    assert len(_sessions(emulator, since)) == 1  # the enrollment's alone
