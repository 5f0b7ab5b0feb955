"""`dasctl transcode`, and the audio-selection options that `register` shares with it."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from dasctl.cli import common
from dasctl.cli.usage import compose_help

if TYPE_CHECKING:
    from dasctl.audio import ChannelChoice

# Shared with `dasctl register` (import these there) so both commands pick audio the same way.
# Values are checked by dasctl.audio.open_audio (UsageError, exit 2), not by click, so every
# mistake reads `dasctl: error: ...` like any other.
ChannelOption = Annotated[
    str | None,
    typer.Option(
        "--channel",
        "-c",
        metavar="mix|left|right|N|customer|agent",
        autocompletion=lambda incomplete: common.complete_channel(incomplete),
        help="Which channel to use: mix (all channels averaged), left, right, N counted from 0, or the "
        "customer's or agent's side (the profile's customer_channel). [default: the profile's channel, "
        "else mix]",
        show_default=False,
    ),
]
StartOption = Annotated[
    float,
    typer.Option("--start", metavar="SECONDS", help="Skip the input's first SECONDS."),
]
EndOption = Annotated[
    float | None,
    typer.Option("--end", metavar="SECONDS", help="Stop at SECONDS of the input (default: its end).",
                 show_default=False),
]
FrameMsOption = Annotated[
    int,
    typer.Option("--frame-ms", metavar="MS", help="Frame length in milliseconds (pacing granularity)."),
]

HELP = compose_help(
    "Write the 8 kHz mu-law stream that `register` would send, to listen to or to debug.",
    "OUT's name says the format: NAME.wav is a playable mu-law WAV, NAME.ul (.raw, .mulaw) raw mu-law "
    "bytes, - raw bytes on stdout. The same --channel, --start and --end as `register`.",
    examples=[
        "dasctl transcode call.wav call-8k.wav",
        "dasctl transcode call.wav - --channel left --speed 1 | play -t ul -r 8000 -c 1 -",
        "dasctl transcode call.flac call.ul --start 30 --end 90",
    ],
    exit_codes="""
    0 written
    2 usage error
    3 input audio unusable
    """,
)

RAW_SUFFIXES = (".ul", ".raw", ".mulaw", ".ulaw", ".u8")


def _output_kind(output: str) -> str:
    """'stdout', 'wav' or 'raw' from OUT; anything else is a UsageError that lists the choices."""
    from dasctl.errors import UsageError

    if output == "-":
        return "stdout"
    lowered = output.lower()
    if lowered.endswith(".wav"):
        return "wav"
    if lowered.endswith(RAW_SUFFIXES):
        return "raw"
    raise UsageError(
        f"{output}: cannot tell the output format from the name",
        "Use a .wav name (8 kHz mu-law WAV), .ul/.raw/.mulaw (raw mu-law bytes), or - for stdout.",
    )


def transcode(
    input_path: Annotated[str, typer.Argument(metavar="IN", help="Recording to read ('-' = stdin).",
                                              show_default=False)],
    output: Annotated[str, typer.Argument(
        metavar="OUT", help="NAME.wav (playable), NAME.ul/.raw (raw mu-law), or '-' (raw to stdout).",
        show_default=False)],
    channel: ChannelOption = None,
    start: StartOption = 0.0,
    end: EndOption = None,
    speed: Annotated[
        float,
        typer.Option("--speed", metavar="N",
                     help="0 = as fast as possible; 1 = real time (to pipe into a player); N = N x that."),
    ] = 0.0,
    frame_ms: FrameMsOption = 20,
) -> None:
    """Write the 8 kHz mu-law stream that `register` would send, to listen to or to debug."""
    from dasctl import audio
    from dasctl.errors import UsageError

    kind = _output_kind(output)
    audio.check_frame_ms(frame_ms)
    pacer = audio.Pacer(speed)
    stdout = sys.stdout.buffer
    if kind == "stdout" and stdout.isatty():
        raise UsageError("refusing to write binary audio to a terminal",
                         "Redirect it (> call.ul) or pipe it (| play -t ul -r 8000 -).")
    env = common.environment()
    choice = profile_channel(channel)
    with audio.open_audio(input_path, channel=choice, start=start, end=end) as stream:
        chunks = stream.chunks() if speed == 0 else audio.paced_frames(stream.frames(frame_ms), pacer)
        if kind == "wav":
            written = audio.write_mulaw_wav(output, chunks)
        elif kind == "raw":
            written = audio.write_mulaw_raw(output, chunks)
        else:
            written = 0
            for chunk in chunks:
                stdout.write(chunk)
                written += len(chunk)
                if speed:
                    stdout.flush()  # a player downstream hears it when it is due
            stdout.flush()
        if not env.quiet:
            layout = f"{stream.input_channels} ch"
            fields = stream.channel_fields()
            if stream.input_channels > 1 and fields["channel"] != "mix":
                layout += f", channel {channel if channel and 'side' not in fields else fields['channel']}"
                layout += f" ({fields['side']})" if "side" in fields else ""
            elif stream.input_channels > 1:  # what register would send unasked: both sides of a call
                layout += ", mixed"
            target = "stdout" if kind == "stdout" else output
            from dasctl.safe_text import quoted

            print(  # file names are not dasctl's: quoted, so an escape in one never reaches the terminal
                f"transcode: {quoted(stream.name)} ({stream.input_format}, {stream.input_rate} Hz, {layout}) "
                f"-> {quoted(target)}: {written / audio.SAMPLE_RATE:.1f} s of 8 kHz mu-law",
                file=sys.stderr,
            )


def profile_channel(channel: str | None) -> str | ChannelChoice:
    """--channel as given, unless it names a side (customer, agent) or is absent: then the profile decides
    (its customer_channel, its channel), as for register. No profile is read for mix, left, right or N."""
    from dasctl import audio

    if channel is not None and audio.parse_channel(channel) not in audio.SIDES:
        return channel
    from dasctl.config import load_profile

    return audio.choose_channel(channel, load_profile(common.profile_name(None)))


def install(app: typer.Typer) -> None:
    """Add this module's commands to the application."""
    app.command("transcode", help=HELP)(transcode)
