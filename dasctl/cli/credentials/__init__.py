"""`dasctl credentials ...`: what the credential store keeps, its key, consent and audit log.

A thin command line over dasctl/store/: each command parses, calls the store, and renders.
"""

from __future__ import annotations

import typer

from dasctl.cli.credentials import consent, keys, records, transfer
from dasctl.cli.credentials.render import help_text
from dasctl.cli.usage import compose_help

credentials_app = typer.Typer(
    name="credentials",
    help=compose_help(
        "List, show, export, import and remove what the credential store keeps (docs/store.md).",
        "Every register and watch attempt is kept under a speaker id; a re-enrollment supersedes the older "
        "credential, which stays in the speaker's history. Credentials and audio are encrypted at rest.",
        examples=[
            "dasctl credentials list",
            "dasctl credentials history CUST12345",
            "dasctl credentials export > credentials.ndjson",
        ],
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
)
key_app = typer.Typer(
    name="key",
    help=compose_help(
        "The credential store's key: make one, see which one is used (docs/store.md).",
        examples=[
            "dasctl credentials key new /etc/dasctl/store.key",
            "dasctl credentials key status",
        ],
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
)


def install(app: typer.Typer) -> None:
    """Add the credentials group to the application."""
    command = credentials_app.command
    command("list", help=help_text(
        "List the current credential of each speaker (a table on a terminal, tab-separated when piped).",
        "  dasctl credentials list\n"
        "  dasctl credentials list --speaker 'CUST*' --json\n"
        "  dasctl credentials list --stale-for NEW-MODEL-HASH   # who must be re-enrolled",
        "0 listed (even none); 2 usage error or unusable store file; 4 --show-credential without the key; "
        "6 store unreachable",
    ))(records.list_credentials)
    command("show", help=help_text(
        "Show a speaker's current credential and where it came from.",
        "  dasctl credentials show CUST12345\n"
        "  dasctl credentials show CUST12345 --show-credential --json | jq -r .credential",
    ))(records.show)
    command("history", help=help_text(
        "Show every enrollment attempt and verification of a speaker, oldest first.",
        "  dasctl credentials history CUST12345\n"
        "  dasctl credentials history CUST12345 --json",
    ))(records.history)
    command("export", help=help_text(
        "Write every enrollment and verification as NDJSON, or a CSV for auditors, on stdout.",
        "  dasctl credentials export > metadata.ndjson                  # no templates, no audio\n"
        "  dasctl credentials export --format csv --kind all --since 2026-01-01 > audit.csv\n"
        "  dasctl credentials export --with-audio | dasctl credentials import --store \"$PG\" -  # all of it",
    ))(transfer.export)
    command("import", help=help_text(
        "Keep the results of register --json, watch or export NDJSON in the store (idempotent).",
        "  dasctl register --json calls/*.wav > results.ndjson; dasctl credentials import results.ndjson\n"
        "  dasctl credentials export --with-audio | dasctl credentials import --store \"$PG\" -",
        "0 imported; 2 usage error; 4 no key for the target store; 6 store unreachable; "
        "7 a line was refused (named by line number, the rest kept)",
    ))(transfer.import_records)
    command("audio", help=help_text(
        "Write a speaker's kept enrollment audio as a playable WAV (8 kHz mu-law).",
        "  dasctl credentials audio CUST12345 CUST12345.wav\n"
        "  dasctl credentials audio CUST12345 /tmp/c.wav --force && play /tmp/c.wav",
    ))(records.audio)
    command("rm", help=help_text(
        "Remove everything kept about a speaker (asks first on a terminal; --yes in scripts).",
        "  dasctl credentials rm CUST12345\n"
        "  dasctl credentials rm CUST12345 --yes --json",
    ))(records.remove)
    command("optout", help=help_text(
        "Record that customers withdrew consent: destroy their credentials and audio, keep the history, "
        "and refuse to enroll or verify them again.",
        "  dasctl credentials optout CUST12345 --reason 'GDPR request #4411'\n"
        "  dasctl credentials optout --from crm-optouts.txt",
    ))(consent.optout)
    command("optin", help=help_text(
        "Lift a customer's opt-out (they consented again).",
        "  dasctl credentials optin CUST12345",
    ))(consent.optin)
    command("audit", help=help_text(
        "Show who read a secret or destroyed records, when (the audit log).",
        "  dasctl credentials audit --since 2026-01-01\n"
        "  dasctl credentials audit --json",
    ))(consent.audit)
    command("purge", help=help_text(
        "Destroy what is past a retention limit (durations: 90d, 12w, 6m, 3y); audited.",
        "  dasctl credentials purge --audio-older-than 90d --failed-older-than 30d\n"
        "  dasctl credentials purge --inactive-for 3y --dry-run",
    ))(consent.purge)
    command("check", help=help_text(
        "Run a full integrity check of the store (every open runs a quick one when the file changed).",
        "  dasctl credentials check\n"
        "  dasctl credentials check --store backup.db --json",
        "0 sound; 2 corrupt (the first problem named) or no such store; 6 store unreachable",
    ))(records.check)
    command("rekey", help=help_text(
        "Re-wrap the store's data keys under a new key (resumable; a running watch keeps working).",
        "  dasctl credentials key new new.key && dasctl credentials rekey --new-key-file new.key",
    ))(keys.rekey)
    key_app.command("new", help=help_text(
        "Make a new store key (32 random bytes, base64) in a new 0600 file or on stdout.",
        "  dasctl credentials key new /etc/dasctl/store.key\n"
        "  dasctl credentials key new > store.key",
        "0 written; 2 the file exists, or stdout is a terminal",
    ))(keys.key_new)
    key_app.command("status", help=help_text(
        "Which key the store is opened with, where it came from, and how many records each key seals.",
        "  dasctl credentials key status\n"
        "  dasctl credentials key status --json",
    ))(keys.key_status)
    credentials_app.add_typer(key_app, name="key")
    app.add_typer(credentials_app, name="credentials")
