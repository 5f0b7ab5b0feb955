"""How dasctl talks about its own command line: the help layout and the wording of usage errors.

Typer builds the click command tree; `adopt()` walks it once and gives every command and group
dasctl's help layout (gh's: summary, USAGE, ARGUMENTS, OPTIONS, EXAMPLES, EXIT CODES), so a command
added later gets it with no extra work. `usage_error()` turns any parser error into one
`dasctl: error: ...` line plus a hint, in plain words, exit 2.

Convention for a command's help text (see `compose_help`): the first paragraph is a one-sentence
summary (it is what `dasctl --help` lists, never cut); then paragraphs of detail; then sections whose
heading is a line in capitals (EXAMPLES, EXIT CODES), whose indented lines are printed as written.
"""

from __future__ import annotations

import re
import shutil
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any

from typer import _click
from typer.core import TyperCommand, TyperGroup

from dasctl.cli import plain_values
from dasctl.errors import UsageError

#: Help never wider than this, even on a wide terminal (long lines are hard to read).
MAX_WIDTH = 100
#: Widest name column (`-c, --channel mix|left|right|N`); longer names get their help on the next line.
NAME_COLUMN = 34

_HEADING = re.compile(r"^[A-Z][A-Z ]+$")

#: Metavars for values whose option declares none: what the value is, never a Python type name.
_TYPE_METAVARS = {int: "N", float: "N", str: "TEXT", bool: "BOOL"}


def compose_help(
    summary: str,
    details: str = "",
    *,
    examples: Sequence[str] = (),
    exit_codes: str | None = None,
) -> str:
    """A command's help text in the layout `adopt()` renders.

    `examples` are command lines (`dasctl register call.wav`), optionally followed by `  # why`;
    `exit_codes` is one line per code (`0 registered`), or None for a command that has only 0 and 2.
    """
    parts = [summary.strip()]
    if details.strip():
        parts.append(textwrap.dedent(details).strip())
    if examples:
        # a line that starts with spaces continues the command above it (after a `\\`)
        parts.append("EXAMPLES\n" + "\n".join(
            f"  {line}" if line.startswith(" ") else f"  $ {line}" for line in examples))
    if exit_codes:
        lines = [line.strip() for line in textwrap.dedent(exit_codes).strip().splitlines()]
        parts.append("EXIT CODES\n" + "\n".join(f"  {line}" for line in lines if line))
    return "\n\n".join(parts)


def help_width() -> int:
    return max(60, min(MAX_WIDTH, shutil.get_terminal_size((MAX_WIDTH, 24)).columns))


def summary(command: _click.Command) -> str:
    """The first paragraph of a command's help, whole (the listing wraps it; it is never cut)."""
    text = command.short_help or command.help or ""
    first = textwrap.dedent(text).strip().split("\n\n", 1)[0]
    return " ".join(first.split())


def value_name(param: _click.Parameter) -> str:
    """What to show for a parameter's value: its metavar, its choices, or a plain word, never `<str>`."""
    metavar = getattr(param, "metavar", None)
    if metavar:
        return str(metavar)
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None and getattr(descriptor, "is_choice", False) and descriptor.choices:
        return "|".join(str(getattr(choice, "value", choice)) for choice in descriptor.choices)
    if param.param_type_name == "argument":
        return (param.name or "VALUE").upper()
    annotation = getattr(descriptor, "annotation", None)
    if descriptor is not None and getattr(descriptor, "is_path", False):
        return "PATH"
    if isinstance(annotation, type) and annotation in _TYPE_METAVARS:
        if annotation is str:
            return (param.name or "VALUE").upper()
        return _TYPE_METAVARS[annotation]
    return (param.name or "VALUE").upper()


def _argument_label(param: _click.Parameter) -> str:
    label = value_name(param)
    bracketed = re.fullmatch(r"\[([^\]]*)\](\.\.\.)?", label)
    if bracketed:  # a metavar written `[SPEAKER]...`: the usage line brackets what is optional itself
        label = bracketed.group(1) + (bracketed.group(2) or "")
    if param.nargs != 1 and not label.endswith("..."):
        label += "..."
    return label


def usage_line(ctx: _click.Context) -> str:
    """`dasctl register [OPTIONS] FILE...`: what a command takes, in the words its help uses."""
    command = ctx.command
    pieces = [ctx.command_path]
    if any(p.param_type_name == "option" and not getattr(p, "hidden", False) for p in command.params):
        pieces.append("[OPTIONS]")
    for param in command.params:
        if param.param_type_name != "argument" or getattr(param, "hidden", False):
            continue
        label = _argument_label(param)
        pieces.append(label if param.required else f"[{label}]")
    if isinstance(command, TyperGroup):
        pieces.append("COMMAND")
    return " ".join(pieces)


def _wrap(text: str, width: int, indent: str = "") -> list[str]:
    # never break a path, URL or flag in the middle: only at spaces
    return textwrap.wrap(
        text, width=width, initial_indent=indent, subsequent_indent=indent,
        break_long_words=False, break_on_hyphens=False,
    ) or [indent.rstrip()]


def _rows(rows: Iterable[tuple[str, str]], width: int) -> list[str]:
    rows = list(rows)
    if not rows:
        return []
    column = min(NAME_COLUMN, max(len(name) for name, _ in rows))
    help_indent = " " * (2 + column + 2)
    lines: list[str] = []
    for name, text in rows:
        wrapped = _wrap(text, width - len(help_indent)) if text else [""]
        if len(name) > column:
            lines.append(f"  {name}")
            lines.extend(help_indent + line for line in wrapped)
        else:
            lines.append(f"  {name.ljust(column)}  {wrapped[0]}".rstrip())
            lines.extend(help_indent + line for line in wrapped[1:])
    return [line.replace(_NBSP, " ") for line in lines]


def _render_text(text: str, width: int) -> tuple[list[str], list[str]]:
    """(body lines, section lines): paragraphs re-wrapped; capitalised sections kept as written."""
    body: list[str] = []
    sections: list[str] = []
    for block in textwrap.dedent(text).strip().split("\n\n"):
        lines = block.splitlines()
        if not lines:
            continue
        if _HEADING.match(lines[0].strip()):
            sections += ["", lines[0].strip(), *(line.rstrip() for line in lines[1:])]
        elif all(line.startswith("  ") for line in lines):
            body += ["", *(line.rstrip() for line in lines)]  # indented: a listing, as written
        else:
            body += ["", *_wrap(" ".join(block.split()), width)]
    return body[1:], sections


def _option_row(param: _click.Parameter, ctx: _click.Context) -> tuple[str, str] | None:
    record = param.get_help_record(ctx)
    if record is None:
        return None
    names = ", ".join(sorted([*param.opts, *param.secondary_opts], key=len))
    takes_value = not (getattr(param, "is_flag", False) or getattr(param, "count", False))
    if param.param_type_name == "option" and takes_value:
        names += f" {value_name(param)}"
        if getattr(param, "multiple", False):
            names += " (repeatable)"
    return names, _glue_extras(record[1])


_NBSP = "\u00a0"


def _plain_range(match: re.Match[str]) -> str:
    low, high = match.group(1), match.group(2)
    return f"{low}..{high}"


def _glue_extras(text: str) -> str:
    """`[default: x; 1..64]` in plain words, each bracket kept on one line (wrapping breaks at spaces)."""

    def glue(match: re.Match[str]) -> str:
        extras = re.sub(r"(-?[\d.]+)<=x<=(-?[\d.]+)", _plain_range, match.group(0))
        extras = re.sub(r"x>=(-?[\d.]+)", r"at least \1", extras)
        extras = re.sub(r"x<=(-?[\d.]+)", r"at most \1", extras)
        return extras.replace(" ", _NBSP)

    return re.sub(r"\[[^\]]*\]", glue, text)


def render_help(command: _click.Command, ctx: _click.Context) -> str:
    """The whole help of a command or group, gh's way."""
    width = help_width()
    body, sections = _render_text(command.help or "", width)
    lines = [*body, "", "USAGE", f"  {usage_line(ctx)}"]
    if isinstance(command, TyperGroup):
        commands = [
            (name, summary(sub))
            for name in command.list_commands(ctx)
            if (sub := command.get_command(ctx, name)) is not None and not sub.hidden
        ]
        lines += ["", "COMMANDS", *_rows(commands, width)]
    arguments = [
        (_argument_label(p), getattr(p, "help", None) or "")
        for p in command.get_params(ctx)
        if p.param_type_name == "argument"
    ]
    if arguments:
        lines += ["", "ARGUMENTS", *_rows(arguments, width)]
    options = [
        row for p in command.get_params(ctx) if p.param_type_name == "option" and (row := _option_row(p, ctx))
    ]
    if options:
        lines += ["", "OPTIONS", *_rows(options, width)]
    lines += sections
    if isinstance(command, TyperGroup):
        lines += ["", "LEARN MORE", f"  Use `{ctx.command_path} COMMAND --help` for more about a command."]
    return "\n".join(line.rstrip() for line in lines).strip("\n")


class DasctlCommand(TyperCommand):
    """A Typer command with dasctl's help layout."""

    def get_help(self, ctx: _click.Context) -> str:
        return render_help(self, ctx)

    def get_short_help_str(self, limit: int = 45) -> str:
        return summary(self)

    def get_help_option(self, ctx: _click.Context) -> Any:
        return plain_values.converting(super().get_help_option(ctx))


class DasctlGroup(TyperGroup):
    """A Typer group with dasctl's help layout."""

    def get_help(self, ctx: _click.Context) -> str:
        return render_help(self, ctx)

    def get_short_help_str(self, limit: int = 45) -> str:
        return summary(self)

    def get_help_option(self, ctx: _click.Context) -> Any:
        return plain_values.converting(super().get_help_option(ctx))


def adopt(command: _click.Command) -> _click.Command:
    """Give this command and everything under it dasctl's help layout (typer built them; we restyle)."""
    if isinstance(command, TyperGroup):
        if type(command) is TyperGroup:
            command.__class__ = DasctlGroup
        for sub in command.commands.values():
            adopt(sub)
    elif type(command) is TyperCommand:
        command.__class__ = DasctlCommand
    return command


def walk(
    command: _click.Command, path: tuple[str, ...] = ()
) -> Iterable[tuple[tuple[str, ...], _click.Command]]:
    """Every (path, command) of the tree, the root first: for tests and completion."""
    yield path, command
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            yield from walk(sub, (*path, name))


# -- usage errors ------------------------------------------------------------------------------------

_PLAIN_VALUE_ERRORS = {
    "float_parsing": "is not a number",
    "float_type": "is not a number",
    "int_parsing": "is not a whole number",
    "int_type": "is not a whole number",
    "int_from_float": "is not a whole number",
    "bool_parsing": "is not yes or no",
    "finite_number": "is not a finite number",
}


def _param_label(param: Any) -> str:
    if param is None:
        return "a value"
    if param.param_type_name == "argument":
        return _argument_label(param)
    opts = sorted(param.opts, key=len, reverse=True)
    return opts[0] if opts else str(param.name)


def _bad_value(error: _click.exceptions.BadParameter) -> str:
    """`--speed 'abc' is not a number`, from pydantic's validation error when there is one."""
    label = _param_label(error.param) if error.param is not None else str(error.param_hint or "a value")
    cause = error.__cause__
    details = cause.errors() if cause is not None and hasattr(cause, "errors") else None
    if details:
        first = details[0]
        kind = str(first.get("type", ""))
        given = first.get("input")
        context = first.get("ctx") or {}
        shown = f"{given!r}" if isinstance(given, str) else str(given)
        if kind in _PLAIN_VALUE_ERRORS:
            return f"{label} {shown} {_PLAIN_VALUE_ERRORS[kind]}"
        bounds = {
            "greater_than_equal": ("ge", "must be at least"),
            "greater_than": ("gt", "must be more than"),
            "less_than_equal": ("le", "must be at most"),
            "less_than": ("lt", "must be less than"),
        }
        if kind in bounds:
            key, words = bounds[kind]
            return f"{label} {given} {words} {context.get(key)}"
        if kind in ("enum", "literal_error") and context.get("expected"):
            expected = str(context["expected"]).replace("'", "")
            return f"{label} {shown} is not one of: {expected}"
    message = error.message.rstrip(".")
    return f"{label}: {message[:1].lower()}{message[1:]}"


def _missing(error: _click.exceptions.MissingParameter) -> str:
    ctx = error.ctx
    param = error.param
    if ctx is not None and param is not None and param.param_type_name == "argument":
        # every required argument not given, not just the first one click stopped at
        names = [
            _argument_label(p) for p in ctx.command.params
            if p.param_type_name == "argument" and p.required and ctx.params.get(p.name) in (None, (), [])
        ]
        if names:
            listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
            return f"missing {listed}"
    return f"missing {_param_label(param)}"


def _did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def usage_error(error: _click.exceptions.UsageError) -> UsageError:
    """A parser error as dasctl's own UsageError: one plain line, a hint that says what to run."""
    ctx = error.ctx
    path = ctx.command_path if ctx is not None else "dasctl"
    hint = f"Usage: {usage_line(ctx)}  (see `{path} --help`)" if ctx is not None else "See `dasctl --help`."
    exceptions = _click.exceptions
    if isinstance(error, exceptions.MissingParameter):
        return UsageError(_missing(error), hint)
    if isinstance(error, exceptions.BadParameter):
        return UsageError(_bad_value(error), hint)
    if isinstance(error, exceptions.NoSuchOption):
        message = f"unknown option {error.option_name} for `{path}`"
        options = [o for p in (ctx.command.params if ctx else []) for o in getattr(p, "opts", [])]
        close = _did_you_mean(error.option_name, options)
        return UsageError(message, f"Did you mean {close}?  (see `{path} --help`)" if close else hint)
    text = error.format_message().strip()
    unknown = re.match(r"No such command '([^']+)'", text)
    if unknown and ctx is not None and isinstance(ctx.command, TyperGroup):
        close = _did_you_mean(unknown.group(1), ctx.command.list_commands(ctx))
        return UsageError(
            f"unknown command {unknown.group(1)!r} for `{path}`",
            f"Did you mean `{path} {close}`?" if close else f"See `{path} --help` for the commands.",
        )
    requires = re.match(r"Option '(.+)' requires (an argument|\d+ arguments)", text)
    if requires:
        return UsageError(f"{requires.group(1)} needs a value", hint)
    if text.startswith("Missing command"):
        return UsageError(f"`{path}` needs a command", f"See `{path} --help` for the commands.")
    extra = re.match(r"Got unexpected extra argument(?:s|\(s\))? \((.+)\)", text)
    if extra:
        return UsageError(f"too many arguments: {extra.group(1)}", hint)
    text = text.rstrip(".")
    return UsageError(text[:1].lower() + text[1:], hint)
