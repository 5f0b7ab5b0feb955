"""`dasctl watch DIR`: enroll everything that lands in a folder. Thin: parse, build the runner, run it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dasctl.cli.common import (
    BatchSpeedOption,
    BatchTimeoutOption,
    DurationOption,
    JsonOption,
    ModelHashOption,
    ProfileOption,
    ProtocolOption,
    QuietOption,
    StoreKeyFileOption,
    StoreOption,
    ThresholdOption,
    check_protocol,
    environment,
    key_file_flag,
    open_store_option,
    profile_name,
)
from dasctl.cli.transcode import ChannelOption, EndOption, StartOption
from dasctl.cli.usage import compose_help

WATCH_HELP = compose_help(
    "Enroll every recording in DIR, then each new one as it lands; one JSON line per file.",
    """
    On a terminal each result is a line for people (done/failed, file, speaker) above the live bars;
    piped, or with --json, one JSON line per file.

    Files already in DIR are taken first, then new ones once they stop growing (--settle). Every
    outcome is kept in the credential store (an enrollment record per file, speaker id = the file's stem
    or --speaker-from) before it is printed, so a restart resumes where the last run stopped and reports
    every file exactly once. Nothing is written into DIR. Transient failures (exit-6 class) are
    retried with backoff; a service unreachable for longer than --unreachable-budget ends watch with 6.

    Every recording is taken (audio extensions, and files whose content opens as audio); what is not
    taken is counted and named in the closing line. With one PostgreSQL store, any number of watchers on
    one or several hosts share DIR, each file enrolled once; `dasctl watch status [DIR]` shows them.
    """,
    examples=[
        "dasctl watch /data/backlog --once --concurrency 8 > results.ndjson",
        "dasctl watch /data/calls --done-dir /data/enrolled --failed-dir /data/rejected",
        "dasctl watch /data/exports --once --speaker-from '-(?P<speaker>CUST[0-9]+)'   # 0412-CUST1.wav",
        "dasctl watch /data/calls --dry-run",
        "dasctl watch /mnt/calls --store postgresql://ops@db/dasctl --metrics 9464 --log-format json",
        "dasctl watch status /mnt/calls --store postgresql://ops@db/dasctl",
    ],
    exit_codes="""
    0 (--once) every recording in DIR is enrolled
    2 usage error
    4 authentication
    6 service unreachable past the budget, or the store could not be written
    7 (--once) some recording in DIR failed, in this run or an earlier one
    130 stopped by SIGINT, SIGTERM or SIGHUP
    A closed stdout (| head -n1) stops watch quietly with 0 or 7.
    """,
)

def watch(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Folder to watch.", show_default=False)],
    status_of: Annotated[
        list[Path] | None,
        typer.Argument(metavar="[DIR]", hidden=True, show_default=False,
                       help="Only after `status` (dasctl watch status [DIR]): the inbox to show."),
    ] = None,
    pattern: Annotated[
        list[str] | None,
        typer.Option("--pattern", metavar="GLOB", show_default=False,
                     help="File name pattern, case-insensitive; repeat for several. "
                          "[default: every recording, by extension or content]"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be enrolled (and under which speaker id), "
                                             "what is done, opted out or skipped; send nothing.")
    ] = False,
    log_format: Annotated[
        str, typer.Option("--log-format", metavar="text|json",
                          help="stderr: lines for people, or one JSON object per event (ts, level, msg, "
                               "file, speaker, call_id, outcome, worker) for a log shipper.")
    ] = "text",
    metrics: Annotated[
        str | None,
        typer.Option("--metrics", metavar="ADDR", show_default=False,
                     help="Serve Prometheus metrics (/metrics) and /healthz on ADDR, e.g. 127.0.0.1:9464 "
                          "(a bare port listens on loopback only)."),
    ] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Also watch sub-folders.")] = False,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-j", min=1, max=256, help="Sessions at once.")
    ] = 4,
    once: Annotated[
        bool, typer.Option("--once", help="Process the files there now, then exit (0, or 7 if any failed).")
    ] = False,
    done_dir: Annotated[
        Path | None, typer.Option("--done-dir", help="Move enrolled files here (keeps sub-folders).")
    ] = None,
    failed_dir: Annotated[
        Path | None, typer.Option("--failed-dir", help="Move files that finally failed here.")
    ] = None,
    journal: Annotated[
        Path | None,
        typer.Option("--journal", metavar="FILE", show_default=False,
                     help="An old journal file to import once (watch's state now lives in the store). "
                          "[default: DIR/.dasctl-watch.jsonl, if there]"),
    ] = None,
    speaker_from: Annotated[
        str | None,
        typer.Option("--speaker-from", metavar="REGEX", show_default=False,
                     help="Take the speaker id from the file name: the group (?P<speaker>...), else the "
                          "first group (e.g. '-(?P<speaker>CUST[0-9]+)'). [default: the file's stem]"),
    ] = None,
    consent_from: Annotated[
        str | None,
        typer.Option("--consent-from", metavar="REGEX|FILE", show_default=False,
                     help="Record each enrollment's consent reference: from the file name (the group "
                          "(?P<consent>...), else the first group, else the whole match), or from FILE, "
                          "lines 'NAME,REFERENCE' (NAME: the file name, its stem or the speaker id). A "
                          "file with no reference fails, unsent."),
    ] = None,
    store: StoreOption = None,
    store_key_file: StoreKeyFileOption = None,
    no_store: Annotated[
        bool, typer.Option("--no-store", help="Keep no enrollment records (watch's own state is still kept).")
    ] = False,
    settle: Annotated[
        float, typer.Option("--settle", min=0.0, help="Seconds a file must stay unchanged to be taken.")
    ] = 2.0,
    max_retries: Annotated[
        int, typer.Option("--max-retries", min=0, help="Retries per file for transient failures.")
    ] = 5,
    backoff: Annotated[
        float, typer.Option("--backoff", min=0.0, help="First retry delay (s); doubles each time, max 60.")
    ] = 1.0,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Run again the files the journal records as failed.")
    ] = False,
    unreachable_budget: Annotated[
        float,
        typer.Option("--unreachable-budget", min=0.0,
                     help="Exit 6 once the service has been unreachable this many seconds."),
    ] = 120.0,
    grace: Annotated[
        float,
        typer.Option(
            "--grace", min=0.0, help="On SIGINT/SIGTERM/SIGHUP, seconds to let sessions in flight finish."
        ),
    ] = 10.0,
    protocol: ProtocolOption = "twilio",
    channel: ChannelOption = None,
    speed: BatchSpeedOption = 1.0,
    timeout: BatchTimeoutOption = 60.0,
    start: StartOption = 0.0,
    end: EndOption = None,
    model_hash: ModelHashOption = None,
    threshold: ThresholdOption = None,
    duration: DurationOption = None,
    profile: ProfileOption = None,
    json: JsonOption = False,
    quiet: QuietOption = False,
    summary: Annotated[
        bool, typer.Option("--summary", help="End NDJSON output (piped, or --json) with one summary line: "
                                             "schema dasctl.watch-summary/1, counts of done, failed, "
                                             "opted out and skipped by reason, the skipped files' names.")
    ] = False,
) -> None:
    import asyncio

    from dasctl import audio
    from dasctl import watch as core
    from dasctl.auth import TokenProvider
    from dasctl.display.watch import make_display, result_output
    from dasctl.errors import UsageError
    from dasctl.net import NetworkSettings
    from dasctl.watch.consents import ConsentSource
    from dasctl.watch.speakers import SpeakerNaming

    if str(directory) == "status":  # `dasctl watch status [DIR]` (a folder named status: ./status)
        _status(status_of, store, profile, json, store_key_file)
        return
    if status_of:
        raise UsageError(f"unexpected argument {status_of[0]}", "watch takes one folder: dasctl watch DIR")
    if log_format not in ("text", "json"):
        raise UsageError(f"--log-format {log_format!r}: text or json")
    address = None
    if metrics is not None:
        from dasctl.watch.metrics import parse_address

        address = parse_address(metrics)
    root = directory.expanduser().absolute()
    if not root.is_dir():
        raise UsageError(f"{directory} is not a directory", "Give the folder to watch (create it first).")
    check_protocol(protocol)
    audio.parse_channel(channel)  # a bad --channel is one usage error now, not one failure per file
    audio.check_range(start, end)
    speakers = SpeakerNaming(speaker_from)  # a bad pattern is a usage error before anything starts
    consents = ConsentSource.parse(consent_from)  # ...and so is a bad consent pattern or file
    if consents is not None and no_store:
        raise UsageError("--consent-from records consent with each enrollment, and --no-store keeps none",
                         "Drop one of them.")
    moves = {}
    for flag, value in (("--done-dir", done_dir), ("--failed-dir", failed_dir)):
        if value is not None:
            target = value.expanduser().absolute()
            if target == root:
                raise UsageError(f"{flag} cannot be the watched folder itself")
            moves[flag] = target

    from dasctl.enroll import register_request

    resolved, options = register_request(
        profile_name(profile),
        protocol=protocol,
        model_hash=model_hash,
        threshold=threshold,
        duration=duration,
        speed=speed,
        timeout=timeout,
        store_key_file=key_file_flag(store_key_file)["store_key_file"],
    )
    # --channel > DASCTL_CHANNEL > the profile's channel; nothing chosen on a stereo call: said once
    choice = audio.choose_channel(channel, resolved, audio.MixWarning(lambda text: display.warning(text)))
    network = NetworkSettings.from_profile(resolved)
    tokens = TokenProvider(resolved, network)
    settings = core.WatchSettings(
        root=root,
        patterns=tuple(pattern) if pattern else core.DEFAULT_PATTERNS,
        recursive=recursive,
        concurrency=concurrency,
        once=once,
        done_dir=moves.get("--done-dir"),
        failed_dir=moves.get("--failed-dir"),
        journal_path=journal.expanduser().absolute() if journal else None,
        speakers=speakers,
        consents=consents,
        keep_enrollments=not no_store,
        profile=resolved.name,
        service_url=resolved.url,
        settle=settle,
        retry=core.RetryPolicy(max_retries=max_retries, base=backoff),
        retry_failed=retry_failed,
        unreachable_budget=unreachable_budget,
        grace=grace,
        model_hash=resolved.model_hash,
        protocol=protocol,
        audio_total_duration=resolved.audio_total_duration,
        summary_line=summary,
    )

    async def token_check() -> object:
        return await asyncio.to_thread(tokens.token)

    if journal is not None and not journal.expanduser().is_file():
        raise UsageError(f"--journal {journal}: no such file",
                         "--journal names an old journal to import; watch's state now lives in the store.")
    # before any session: an unusable store is one clear error; a dry run (a look) creates no store
    kept = open_store_option(store, resolved, create=not dry_run)
    env = environment()
    if quiet:  # `watch DIR -q` as well as `dasctl -q watch DIR`
        env.quiet = True
    if dry_run:  # reads metadata only: no key needed, and no retention run by a look
        from dasctl.display.watch import print_plan
        from dasctl.watch.dry_run import plan

        try:
            opted_out = lambda speaker: kept.refusal(speaker) is not None  # noqa: E731
            print_plan(env, plan(settings, kept, opted_out), json=json)
        finally:
            kept.close()
        return
    kept.require_secrets()  # watch writes credentials: no key is exit 4 now, not after a session
    from dasctl.cli.common import warn
    from dasctl.store.retention import start_retention

    start_retention(kept, resolved.retention, warn)  # the profile's retention: now and every 24 h
    from dasctl.cli.common import warn_of_stale_profile_model

    warn_of_stale_profile_model(kept, resolved, env.stderr)

    from dasctl.watch.claims import worker_name

    if log_format == "json":
        from dasctl import logs

        logs.configure(env.verbosity, env.stderr, log_format="json")
    human = not json and bool(env.stdout_isatty)
    display = make_display(env, human_results=human, log_format=log_format, worker=worker_name())
    out, render = result_output(env, display, json=json, speaker=speakers.speaker)
    state = core.WatchState(kept, root)
    observer: core.WatchObserver = display
    server = None
    if address is not None:
        from dasctl.watch.metrics import MetricsObserver, WatchMetrics, serve

        counted = WatchMetrics()
        state.on_store_call = counted.store_call
        observer = MetricsObserver(display, counted, state.claims.count)
        try:
            server = serve(counted, address)
        except BaseException:
            display.close()
            kept.close()
            raise
    runner = core.WatchRunner(
        settings,
        core.register_file_session(resolved, tokens, network, options, channel=choice, start=start, end=end),
        store=kept,
        out=out,
        render=render,
        observer=observer,
        token_check=token_check,
        state=state,
    )
    try:
        code = asyncio.run(runner.run())
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        kept.close()
        if runner.stdout_closed:
            _forget_stdout()
    raise typer.Exit(int(code))


def _status(
    folders: list[Path] | None, store: str | None, profile: str | None, json: bool, key_file: Path | None
) -> None:
    """`dasctl watch status [DIR]`: the watchers of an inbox (every inbox the store knows without DIR)."""
    from dasctl.cli.common import profile_name
    from dasctl.config import load_profile
    from dasctl.display.watch import print_status
    from dasctl.watch.status import inbox_status

    # a look creates no store (a typo'd --store is an error naming it)
    kept = open_store_option(store, load_profile(profile_name(profile), flags=key_file_flag(key_file)),
                             create=False)
    try:
        if folders:
            inboxes = [str(folder.expanduser().absolute()) for folder in folders]
        else:
            inboxes = kept.watch_inboxes()
        print_status(environment(), [inbox_status(kept, inbox) for inbox in inboxes], json=json)
    finally:
        kept.close()


def _forget_stdout() -> None:
    """The reader is gone: point stdout at /dev/null so the exit-time flush cannot fail noisily."""
    import os
    import sys

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def install(app: typer.Typer) -> None:
    """Add this module's commands to the application."""
    app.command("watch", help=WATCH_HELP)(watch)
