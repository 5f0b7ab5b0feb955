"""Re-enroll every speaker whose current credential was made with another model, from the kept audio.

The vendor's advice when the biometric model changes (docs/protocol.md §6): enroll again from the enrollment
audio, without calling anyone. For each stale speaker, one register session with the new model sends the
kept 8 kHz mu-law bytes as they are; the new credential becomes current (origin "reenroll") and the old
one stays as history.

Resumable without a journal of its own: the store's current model hash is the progress marker. A speaker
whose current credential already has the new model is done. The one window that matters is between the
service's result and the store write: the service keeps nothing, so a result lost there is simply asked
for again. Each attempt's call id is derived from (old enrollment, new model), and the store keeps one
record per (speaker, call id, ok): a run that raced another, or wrote just before it was killed, never
leaves two records for one re-enrollment.

No Typer or rich here: the CLI renders the progress it is told about.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from dasctl.errors import AudioError, AuthError, DasctlError, ServiceRejected, ServiceUnavailable, UsageError

if TYPE_CHECKING:
    from dasctl.auth import TokenProvider
    from dasctl.config import Profile
    from dasctl.net import NetworkSettings
    from dasctl.session import RegisterOptions
    from dasctl.store import EnrollmentRecord, Store

log = logging.getLogger(__name__)

SCHEMA = "dasctl.reenroll/1"
ORIGIN = "reenroll"
#: Fixed namespace of the call ids of re-enrollments (uuid5 of "enrollment id/new model hash").
CALL_ID_NAMESPACE = uuid.UUID("6f1c52a4-3b0e-4d9e-9a51-2c1d7e0b8f43")

# What happened to one speaker (the `status` field of a result line).
REENROLLED = "reenrolled"
FAILED = "failed"
NO_AUDIO = "no-audio"
ALREADY = "already"  # another run re-enrolled it meanwhile
PLANNED = "planned"  # --dry-run


@dataclass
class Plan:
    """What a run would do: speakers to re-enroll (with kept audio), and those it cannot."""

    model_hash: str
    to_do: list[EnrollmentRecord] = field(default_factory=list)
    no_audio: list[EnrollmentRecord] = field(default_factory=list)
    #: with nothing to do: whether some current credential is made with the model already (else the
    #: store holds none, or none of a speaker matching the glob)
    on_target: bool = False

    @property
    def total(self) -> int:
        return len(self.to_do) + len(self.no_audio)


@dataclass
class SpeakerResult:
    """One speaker's outcome, as printed (one NDJSON line with --json)."""

    speaker: str
    status: str
    previous_model_hash: str | None
    model_hash: str
    document: dict[str, Any]
    error: DasctlError | None = None

    @property
    def ok(self) -> bool:
        return self.status in (REENROLLED, ALREADY, PLANNED)


def plan(store: Store, model_hash: str, speaker_glob: str | None = None) -> Plan:
    """Every current credential made with another model (matching the glob), split by kept audio."""
    if not model_hash:
        raise UsageError("--model-hash must not be empty")
    result = Plan(model_hash)
    for record in store.list_current(speaker_glob=speaker_glob, stale_for=model_hash):
        (result.to_do if record.has_audio else result.no_audio).append(record)
    if not result.total:
        if speaker_glob is None:
            result.on_target = store.holds_model(model_hash)  # answered at the first row
        else:
            result.on_target = any(True for _ in store.list_current(speaker_glob=speaker_glob,
                                                                     model_hash=model_hash))
    return result


def profile_model_warning(store: Store, profile: Profile) -> str | None:
    """A warning when the profile's model (not a --model-hash flag) holds no current credential while
    another model holds most of them: the store was re-enrolled and the profile was left behind, so new
    enrollments would be made with the model everyone else moved away from."""
    from dasctl.config import SOURCE_ENV, SOURCE_FLAG, config_key

    model = profile.model_hash
    if not model or profile.sources.get("model_hash") == SOURCE_FLAG:
        return None
    if store.holds_model(model):  # the usual case, answered at the first row: no count of the whole store
        return None
    counts = store.current_models()
    total = sum(counts.values())
    if not total or counts.get(model):
        return None
    top, held = max(((name, count) for name, count in counts.items() if name), key=lambda item: item[1],
                    default=("", 0))
    if 2 * held <= total:
        return None
    if profile.sources.get("model_hash") == SOURCE_ENV:
        fix = f"export {config_key('model_hash').env}={top}"
    else:
        fix = f"dasctl config set model_hash {top} --profile {profile.name}"
    return (f"profile '{profile.name}' enrolls with model {model}, but no speaker in the store has a "
            f"credential of it, and {held} of {total} have model {top} (re-enrolled?); to enroll with "
            f"{top}: {fix}")


def call_id_for(record: EnrollmentRecord, model_hash: str) -> str:
    """The call id of re-enrolling one enrollment with one model: the same on every run of this store,
    and another for another store's enrollment of the same number (two teams' stores both count from 1,
    and one service refuses a call id already live): the enrollment's own call id and time go in too."""
    name = f"{record.id}/{record.speaker}/{record.call_id or ''}/{record.created_at or ''}/{model_hash}"
    return str(uuid.uuid5(CALL_ID_NAMESPACE, name))


def no_audio_hint(speaker: str, model_hash: str) -> str:
    return (
        f"No enrollment audio was kept for {speaker}; enroll from a recording: "
        f"`dasctl register FILE --speaker {speaker} --model-hash {model_hash}`."
    )


def _base_document(record: EnrollmentRecord, model_hash: str, status: str) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "speaker": record.speaker,
        "status": status,
        "ok": status in (REENROLLED, ALREADY, PLANNED),
        "previous": {"id": record.id, "model_hash": record.model_hash, "created_at": record.created_at},
        "model_hash": model_hash,
    }


def planned_document(record: EnrollmentRecord, model_hash: str) -> dict[str, Any]:
    """--dry-run: what would happen to one speaker."""
    status = PLANNED if record.has_audio else NO_AUDIO
    document = _base_document(record, model_hash, status)
    if not record.has_audio:
        document["ok"] = False
        document["error"] = {
            "kind": NO_AUDIO,
            "message": "no kept enrollment audio",
            "hint": no_audio_hint(record.speaker, model_hash),
        }
    return document


def no_audio_result(record: EnrollmentRecord, model_hash: str) -> SpeakerResult:
    document = planned_document(record, model_hash)
    error = UsageError(
        f"{record.speaker}: no kept enrollment audio", no_audio_hint(record.speaker, model_hash)
    )
    return SpeakerResult(record.speaker, NO_AUDIO, record.model_hash, model_hash, document, error)


#: the emulator's wording of a refused model (`... is not a model this service has (available: a, b)`);
#: the real service names the field only (error-parameters naming the field), so the list is optional
_AVAILABLE = re.compile(r"available:\s*([^)]*)\)?")


def model_refusal(
    model_hash: str, content: str, known: Sequence[str] = ()
) -> ServiceRejected:
    """The one error for a model the service does not have: the models it names (else those the store
    knows) and the closest one to what was typed."""
    import difflib

    match = _AVAILABLE.search(content)
    offered = [name.strip() for name in match.group(1).split(",") if name.strip()] if match else []
    candidates = offered or sorted({name for name in known if name and name != model_hash})
    close = difflib.get_close_matches(model_hash, candidates, n=1, cutoff=0.5)
    where = "the service has" if offered else "credentials in the store were made with"
    listed = f"Models {where}: {', '.join(candidates)}." if candidates else ""
    suggestion = f" Did you mean --model-hash {close[0]}?" if close else ""
    return ServiceRejected(
        f"the service has no model {model_hash!r}: nothing was re-enrolled",
        (listed + suggestion).strip() or "Check the model hash with the service's administrator.",
        event="error-parameters",
    )


async def check_model(
    options: RegisterOptions, profile: Profile, tokens: TokenProvider, network: NetworkSettings,
    known: Sequence[str] = (),
) -> None:
    """Ask the service whether it has the target model, before the first speaker's session.

    The protocol has no call that lists models: the check is a register session's `initialize` with the
    new model and no audio. The service answers error-parameters naming model_hash when it has no such
    model, else gets its audio consumer ready; either way the session is closed at once, having sent no
    audio and made no credential. Other refusals are left to the sessions themselves."""
    from dasctl import events
    from dasctl.audio import MulawAudio
    from dasctl.session import RegisterSession, signalling

    session = RegisterSession(MulawAudio(b"", "model check"), replace(options, call_id=None), profile, tokens,
                              network, None)
    http = network.aiohttp_session()
    sio: Any = None
    try:
        sio, session.queue = await signalling.connect(http, profile, session.namespace, tokens,
                                                      options.timeout, network)
        await sio.emit(events.INITIALIZE, session.initialize_payload(), namespace=session.namespace)
        deadline = asyncio.get_running_loop().time() + options.timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            try:
                kind, payload = await asyncio.wait_for(session.queue.get(), max(0.0, left))
            except asyncio.TimeoutError:
                return  # no answer to the check: the sessions will report whatever is wrong
            if kind == "disconnect":
                return
            event = events.parse_event(payload[0], payload[1])
            if isinstance(event, events.ConsumerReady) or event.terminal:
                break
    finally:
        await session.close(sio, http)
    if event.name == events.ERROR_PARAMETERS and "model_hash" in event.content:
        log.debug("the service refused model %s: %s", options.model_hash, event.content)
        raise model_refusal(options.model_hash, event.content, known)


class Reenroller:
    """Runs a plan with up to `concurrency` sessions at once on one loop, sharing one TokenProvider."""

    def __init__(
        self,
        store: Store,
        options: RegisterOptions,
        profile: Profile,
        tokens: TokenProvider,
        network: NetworkSettings,
        concurrency: int = 4,
        on_start: Callable[[str], None] | None = None,
        on_result: Callable[[SpeakerResult], None] | None = None,
    ) -> None:
        self.store = store
        self.options = options
        self.profile = profile
        self.tokens = tokens
        self.network = network
        self.concurrency = max(1, concurrency)
        self.on_start = on_start
        self.on_result = on_result
        self.auth_failure: AuthError | None = None

    async def run(self, records: Sequence[EnrollmentRecord]) -> list[SpeakerResult]:
        """Re-enroll each record's speaker; an auth refusal stops the batch (every session would fail)."""
        queue: asyncio.Queue[EnrollmentRecord] = asyncio.Queue()
        for record in records:
            queue.put_nowait(record)
        results: list[SpeakerResult] = []

        async def worker() -> None:
            while self.auth_failure is None:
                try:
                    record = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                result = await self.reenroll_one(record)
                results.append(result)
                if self.on_result is not None:
                    self.on_result(result)

        workers = [asyncio.create_task(worker()) for _ in range(min(self.concurrency, max(1, len(records))))]
        try:
            await asyncio.gather(*workers)
        except asyncio.CancelledError:
            # gather has cancelled each worker once; cancelling again would cut the sessions' own cleanup
            # (closing both channels) short, so only wait for it, bounded
            await asyncio.wait(workers, timeout=5.0)
            raise
        except BaseException:
            for task in workers:
                task.cancel()
            await asyncio.wait(workers, timeout=5.0)
            raise
        if self.auth_failure is not None:
            raise self.auth_failure
        return results

    async def reenroll_one(self, planned: EnrollmentRecord) -> SpeakerResult:
        from dasctl import results
        from dasctl.audio import MulawAudio
        from dasctl.session import register_audio

        model_hash = self.options.model_hash
        # the store is the progress marker: read it again, another run may have done this speaker
        record = await asyncio.to_thread(self.store.current, planned.speaker, with_audio=True)
        if record is None or record.model_hash == model_hash:
            document = _base_document(planned, model_hash, ALREADY)
            return SpeakerResult(planned.speaker, ALREADY, planned.model_hash, model_hash, document)
        if not record.audio:
            return no_audio_result(record, model_hash)
        if self.on_start is not None:
            self.on_start(record.speaker)
        call_id = call_id_for(record, model_hash)
        options = replace(self.options, call_id=call_id)
        document = _base_document(record, model_hash, FAILED)
        error: DasctlError | None
        try:
            outcome = await register_audio(
                MulawAudio(record.audio, record.speaker), options, self.profile, self.tokens, self.network
            )
        except AuthError as failure:
            self.auth_failure = failure
            error, outcome = failure, None
        except (AudioError, ServiceUnavailable, UsageError) as failure:
            error, outcome = failure, None
        if outcome is None:
            assert error is not None
            document.update(results.failure_document(record.speaker, error, call_id=call_id, schema=SCHEMA))
            document.pop("file", None)
        else:
            session_document = results.result_document(
                record.speaker,
                outcome,
                model_hash=model_hash,
                audio_total_duration=options.audio_total_duration,
            )
            session_document.pop("file", None)
            document.update(session_document)
            error = results.outcome_error(record.speaker, outcome)
        document["schema"] = SCHEMA
        status = REENROLLED if error is None else FAILED
        document["status"] = status
        document["ok"] = error is None
        if isinstance(error, AuthError):
            # not the speaker's failure: nothing recorded, the rerun will try it again
            return SpeakerResult(record.speaker, status, record.model_hash, model_hash, document, error)
        await asyncio.to_thread(self._record, record, document, outcome, call_id)
        return SpeakerResult(record.speaker, status, record.model_hash, model_hash, document, error)

    def _record(self, old: EnrollmentRecord, document: dict[str, Any], outcome: Any, call_id: str) -> None:
        """Keep the attempt; a success supersedes the old credential in the same transaction."""
        from dasctl.store.records import enrollment_from_document

        result = getattr(outcome, "result", None)
        kept = getattr(result, "collected_audio", None) or old.audio
        record = enrollment_from_document(
            {**document, "call_id": call_id, "protocol": self.options.protocol},
            speaker=old.speaker,
            origin=ORIGIN,
            profile=self.profile.name,
            service_url=self.profile.url,
            source_path=old.source_path,
            source_size=old.source_size,
            source_sha256=old.source_sha256,
            audio=kept if document.get("ok") else None,
        )
        record.consent = old.consent  # the same voice, enrolled under the same consent
        self.store.record_enrollment(record)
