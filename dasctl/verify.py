"""Verify: what a credential to check against is, where it comes from, and what a verify "no" means.

`dasctl verify` checks recordings against a speaker's current credential in the store, or against a
credential given by the user (a record written by `register -o`, a `register --json` document, or the
bare credential). No Typer or rich here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dasctl import events
from dasctl.errors import ServiceRejected, UsageError


@dataclass(frozen=True)
class Target:
    """The credential a recording is verified against, and what is known about it."""

    credential: str
    source: str  # "store", a file path, or "<stdin>"
    speaker: str | None = None
    model_hash: str | None = None
    enrollment_id: int | None = None  # the store record, when it came from the store


def parse_credential(text: str, source: str) -> Target:
    """A credential from a `register -o` record, a `register --json` document, or the bare credential."""
    stripped = text.strip()
    if not stripped:
        raise UsageError(
            f"{source}: no credential in it (empty)", "Give a credential record from `register -o`."
        )
    if stripped.startswith("{"):
        documents = _json_documents(stripped, source)
        if len(documents) != 1:
            raise UsageError(
                f"{source}: {len(documents)} JSON documents; give one credential",
                "Keep the line of the one file you want, e.g. with `jq -c 'select(.file==\"call.wav\")'`.",
            )
        return _from_document(documents[0], source)
    if any(character.isspace() for character in stripped):
        raise UsageError(
            f"{source}: not a credential (it has spaces or several lines)",
            "Give a record from `register -o`, a `register --json` document, or the credential alone.",
        )
    return Target(credential=stripped, source=source)


def _json_documents(text: str, source: str) -> list[Any]:
    try:
        return [json.loads(text)]
    except json.JSONDecodeError:
        pass
    documents = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            documents.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise UsageError(f"{source}: line {number} is not JSON ({error.msg})") from None
    return documents


def _from_document(document: Any, source: str) -> Target:
    if not isinstance(document, dict) or events.F_CREDENTIAL not in document:
        raise UsageError(
            f"{source}: a JSON document with no 'credential' field",
            "Give a credential record from `register -o` or a `register --json` document.",
        )
    credential = document[events.F_CREDENTIAL]
    if not isinstance(credential, str) or not credential.strip():
        raise UsageError(
            f"{source}: the record has no credential (its registration failed)",
            "Verify against a successful registration.",
        )
    model_hash = document.get("model_hash")
    # register's documents say where their record was kept (`stored`): verify then records under it
    stored = document.get("stored")
    stored = stored if isinstance(stored, dict) else {}
    speaker = document.get("speaker") or stored.get("speaker")
    enrollment_id = stored.get("id")
    return Target(
        credential=credential.strip(),
        source=source,
        speaker=speaker if isinstance(speaker, str) and speaker else None,
        model_hash=model_hash if isinstance(model_hash, str) and model_hash else None,
        enrollment_id=enrollment_id if isinstance(enrollment_id, int) else None,
    )


def stale_model_error(
    file: str, outcome_content: str, target: Target, service_model_hash: str | None
) -> ServiceRejected:
    """The service could not use the credential (error-parameters about it): most often a credential made
    with a model the service no longer has, which only re-enrolling cures."""
    made_with = (f"The credential was made with model {target.model_hash}" if target.model_hash
                 else "The credential may have been made with a model the service no longer has")
    new = service_model_hash if service_model_hash and service_model_hash != target.model_hash else "NEW"
    who = f" --speaker '{target.speaker}'" if target.speaker else ""
    return ServiceRejected(
        f"{file}: the service cannot use this credential (error-parameters): {outcome_content}",
        f"{made_with}; if the service has moved to another model, run "
        f"`dasctl reenroll --model-hash {new}{who}` and verify again.",
        event=events.ERROR_PARAMETERS,
    )


#: What to do after a verify "no" whose register wording (results._HINTS) would not fit.
VERIFY_HINTS = {
    events.RESULT_FAIL_SPOOF: "The recording looks replayed or synthetic; verify with a live call recording, "
    "or lower --threshold if you trust it.",
}


def is_credential_refusal(event_name: str, content: str) -> bool:
    """Whether an error-parameters is about the credential (the emulator names the field; the real
    service's wording is unknown, so any mention of the credential counts)."""
    return event_name == events.ERROR_PARAMETERS and events.R_CREDENTIAL in content.lower()
