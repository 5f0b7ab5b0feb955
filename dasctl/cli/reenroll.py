"""`dasctl reenroll`: re-enroll every speaker with a credential of another model, from kept audio."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from dasctl.cli import common
from dasctl.cli.usage import compose_help
from dasctl.errors import BatchFailed, Interrupted

if TYPE_CHECKING:
    from dasctl.environment import Environment
    from dasctl.reenroll import Plan, SpeakerResult

HELP = compose_help(
    "Re-enroll every speaker whose current credential was made with another model.",
    """
    When the service moves to a new biometric model, credentials made with the old one stop working. For
    each such speaker in the credential store (or those matching --speaker GLOB), one register session
    with --model-hash sends the enrollment audio kept in the store (no recording is read, nobody is
    called); the new credential becomes current and the old one stays in the speaker's history. Several
    sessions run at once (-j). Interrupted (Ctrl-C, SIGTERM, even kill -9) and run again, it continues
    where it stopped and never re-enrolls a speaker twice. Speakers with no kept audio are reported with
    what to do.

    Progress goes to stderr (one bar on a terminal: done, failed, left, rate, ETA; plain lines otherwise);
    with --json, one dasctl.reenroll/1 line per speaker on stdout.
    """,
    examples=[
        "dasctl reenroll --model-hash model-2027 --dry-run",
        "dasctl reenroll --model-hash model-2027 -j 8 --speed 0",
        "dasctl reenroll --model-hash model-2027 --speaker 'team-a-*' --json | jq 'select(.ok|not)'",
    ],
    exit_codes="""
    0 every stale speaker re-enrolled (or nothing to do, or --dry-run)
    2 usage error
    4 authentication
    6 store or service unreachable
    7 some speakers failed or have no kept audio (listed on stderr; run again to retry them)
    130 interrupted (run again to continue)
    """,
)


def _print_plan(plan: Plan, environment: Environment, as_json: bool) -> None:
    from dasctl import results
    from dasctl.reenroll import no_audio_hint, planned_document
    from dasctl.safe_text import line, quoted

    for record in [*plan.to_do, *plan.no_audio]:
        speaker, old = quoted(record.speaker), quoted(record.model_hash)
        if as_json:
            environment.stdout.write(results.json_line(planned_document(record, plan.model_hash)) + "\n")
        elif record.has_audio:
            environment.stdout.write(f"would re-enroll {speaker}: model {old} -> {quoted(plan.model_hash)}\n")
        else:
            environment.stdout.write(
                f"cannot re-enroll {speaker} (model {old}): no kept audio. "
                f"{line(no_audio_hint(record.speaker, plan.model_hash))}\n"
            )
    environment.stdout.flush()
    common.say(
        f"dry run: {len(plan.to_do)} speaker(s) would be re-enrolled with {plan.model_hash}, "
        f"{len(plan.no_audio)} have no kept audio; nothing was changed and the service was not asked "
        "(the run itself checks that it has the model before any speaker's session)"
    )


def reenroll(
    model_hash: Annotated[
        str, typer.Option("--model-hash", help="The new biometric model to enroll with.", show_default=False)
    ],
    speaker: Annotated[
        str | None,
        typer.Option(
            "--speaker", "-s", help="Only speakers matching this glob (e.g. 'team-a-*').", show_default=False
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-j", min=1, max=64, help="Sessions at once.")
    ] = 4,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be re-enrolled; change nothing.")
    ] = False,
    protocol: common.ProtocolOption = "twilio",
    threshold: common.ThresholdOption = None,
    duration: common.DurationOption = None,
    speed: common.BatchSpeedOption = 1.0,
    timeout: common.BatchTimeoutOption = 60.0,
    as_json: common.JsonOption = False,
    quiet: common.QuietOption = False,
    store_url: common.StoreOption = None,
    store_key_file: common.StoreKeyFileOption = None,
    profile: common.ProfileOption = None,
) -> None:
    """Re-enroll speakers whose credential was made with another model, from the kept enrollment audio."""
    import asyncio

    from dasctl import results
    from dasctl.display.reenroll import choose_reenroll_display
    from dasctl.reenroll import Reenroller, check_model, no_audio_result, plan

    environment = common.environment()
    common.check_protocol(protocol)
    from dasctl.enroll import register_request

    profile_obj, options = register_request(
        common.profile_name(profile),
        protocol=protocol,
        model_hash=model_hash,
        threshold=threshold,
        duration=duration,
        speed=speed,
        timeout=timeout,
        store_key_file=common.key_file_flag(store_key_file)["store_key_file"],
    )
    # it moves the speakers a store holds: none is made (nor its key) where there is none yet
    store = common.open_store_option(store_url, profile_obj, create=False)
    if store.absent:
        store.close()
        common.say(f"nothing to re-enroll: there is no credential store yet ({store.location})")
        return
    if not dry_run:  # its sessions read the kept audio and write credentials: the key first (exit 4)
        store.require_secrets()
    try:
        work = plan(store, model_hash, speaker)
        if dry_run:
            # The service is not asked: it has no call that lists its models, and the only way to learn
            # whether it has one is a register session; a dry run opens none (the real run checks first).
            _print_plan(work, environment, as_json)
            return
        from dasctl.auth import TokenProvider
        from dasctl.net import NetworkSettings

        network = NetworkSettings.from_profile(profile_obj)
        tokens = TokenProvider(profile_obj, network)
        if work.to_do:
            # one clear error before any speaker's session, not the same refusal once per speaker
            known = [r.model_hash or "" for r in [*work.to_do, *work.no_audio]]
            common.run_sessions(check_model(options, profile_obj, tokens, network, known))
        store.audit("reenroll", [r.speaker for r in work.to_do], len(work.to_do))  # it reads their audio
        display = choose_reenroll_display(environment, quiet=quiet)
        outcomes: list[SpeakerResult] = []

        def report(result: SpeakerResult) -> None:
            outcomes.append(result)
            display.finished(result)
            if as_json:
                environment.stdout.write(results.json_line(result.document) + "\n")
                environment.stdout.flush()

        async def run() -> None:
            runner = Reenroller(
                store,
                options,
                profile_obj,
                tokens,
                network,
                concurrency,
                on_start=display.started,
                on_result=report,
            )
            await runner.run(work.to_do)

        display.begin(work.total, model_hash)
        for record in work.no_audio:
            report(no_audio_result(record, model_hash))
        try:
            if work.to_do:
                common.run_sessions(run())
        except (KeyboardInterrupt, asyncio.CancelledError):
            display.end()
            raise Interrupted(
                f"interrupted after {len(outcomes)} of {work.total} speaker(s); what finished is kept",
                "Run the same command again to continue where it stopped.",
            ) from None
        except BaseException:
            display.end()  # an auth refusal stops the batch: leave the terminal clean
            raise
        display.end()
    finally:
        store.close()
    failed = sorted((result for result in outcomes if not result.ok), key=lambda result: result.speaker)
    done = len(outcomes) - len(failed)
    if not work.total and not work.on_target:
        common.say("nothing to re-enroll: the store holds no current credential"
                   + (f" of a speaker matching {speaker!r}" if speaker else ""))
    elif not work.total:
        common.say(f"nothing to re-enroll: every current credential was made with {model_hash}")
    else:
        common.say(f"re-enrolled {done} of {work.total} speaker(s) with {model_hash}; {len(failed)} failed")
    if done or work.on_target:  # the model is in use: new enrollments may follow it
        _offer_profile_change(profile, model_hash)
    if not failed:
        return
    if quiet or common.OPTIONS.quiet:
        # the display said nothing: each failure once, here
        for result in failed:
            common.warn(f"not re-enrolled: {_failure_reason(result)}", environment.stderr)
    from dasctl.errors import ExitCode, ServiceUnavailable

    unreachable = [result.error for result in failed
                   if result.error is not None and result.error.exit_code == ExitCode.UNAVAILABLE]
    if unreachable:  # not the speakers' fault: the whole batch is worth running again (exit 6, as documented)
        raise ServiceUnavailable(
            f"{len(failed)} of {work.total} speaker(s) not re-enrolled; for {len(unreachable)} the service "
            f"was unreachable or failing: {unreachable[0].message}",
            "Run the same command again once the service answers; it continues where it stopped.",
        )
    raise BatchFailed(
        f"{len(failed)} of {work.total} speaker(s) not re-enrolled: "
        + ", ".join(result.speaker for result in failed[:10])
        + (", ..." if len(failed) > 10 else ""),
        "Run the same command again to retry the failed ones; for no kept audio, enroll from a recording "
        "with `dasctl register FILE --speaker ID`.",
    )


def _failure_reason(result: SpeakerResult) -> str:
    from dasctl.reenroll import NO_AUDIO

    if result.status == NO_AUDIO:
        return f"{result.speaker}: no kept enrollment audio"
    message = str((result.document.get("error") or {}).get("message", "failed"))
    return message if message.startswith(result.speaker) else f"{result.speaker}: {message}"


def _offer_profile_change(profile: str | None, model_hash: str) -> None:
    """After a re-enrollment, new registrations still use the profile's model: say how to move it."""
    from dasctl.config import SOURCE_ENV, config_key, load_profile

    own = load_profile(common.profile_name(profile))
    if own.model_hash == model_hash:
        return
    if own.sources.get("model_hash") == SOURCE_ENV:
        variable = config_key("model_hash").env
        common.say(f"{variable} still names model {own.model_hash}, which register and watch enroll with; "
                   f"to enroll new speakers with {model_hash}:\n  export {variable}={model_hash}")
        return
    common.say(f"profile '{own.name}' still names model {own.model_hash}, which register and watch enroll "
               f"with; to enroll new speakers with {model_hash}:\n"
               f"  dasctl config set model_hash {model_hash} --profile {own.name}")


def install(app: typer.Typer) -> None:
    """Add this module's commands to the application."""
    app.command("reenroll", help=HELP)(reenroll)
