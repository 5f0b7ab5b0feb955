"""Global options wherever people type them: `dasctl credentials list --profile team`, `dasctl watch DIR -v`.

click takes a group's options only before the subcommand. As gh takes `-R` anywhere, dasctl moves the
global options (-p/--profile, -v/-vv/--verbose, -q/--quiet, --no-color) found after the command to the
front before parsing, unless the command declares the same option itself (then it is the command's, as
with `register -q`). Values of the command's own options and everything after `--` are left alone, so
`--speaker -v` stays a speaker named `-v`.
"""

from __future__ import annotations

from typer import _click
from typer.core import TyperGroup

from dasctl.errors import UsageError

#: global flags (no value) and global options that take one value
FLAGS = ("-v", "--verbose", "-q", "--quiet", "--no-color")
VALUED = ("-p", "--profile")


def _global(word: str) -> tuple[str, bool] | None:
    """(option name, whether its value is the next word) when `word` is a global option, else None."""
    if word in FLAGS:
        return word, False
    if word.startswith("-v") and len(word) > 2 and set(word[1:]) == {"v"}:
        return "-v", False  # -vv, -vvv
    if word in VALUED:
        return word, True
    if word.startswith("--profile="):
        return "--profile", False
    if word.startswith("-p") and len(word) > 2 and not word.startswith("--"):
        return "-p", False  # -pteam
    return None


def _takes_value(param: _click.Parameter) -> bool:
    return not (getattr(param, "is_flag", False) or getattr(param, "count", False))


def _command_options(command: _click.Command, ctx: _click.Context) -> tuple[set[str], set[str]]:
    """(every option name the command declares, those that take a value)."""
    names: set[str] = set()
    valued: set[str] = set()
    for param in command.get_params(ctx):
        if param.param_type_name != "option":
            continue
        opts = {*param.opts, *param.secondary_opts}
        names |= opts
        if _takes_value(param):
            valued |= set(param.opts)
    return names, valued


def hoist(root: _click.Command, args: list[str]) -> list[str]:
    """The same words with the global options after the command moved before it."""
    front: list[str] = []
    words = list(args)
    index = 0
    # global options already in front, then the command path (groups and their subcommand)
    command = root
    while index < len(words) and isinstance(command, TyperGroup):
        word = words[index]
        found = _global(word)
        if found is not None:
            index += 2 if found[1] else 1
            continue
        if word.startswith("-"):
            return args  # --help, --version, an unknown option: the parser's to explain
        sub = command.commands.get(word)
        if sub is None:
            return args  # an unknown command: the parser suggests the right one
        command = sub
        index += 1
    ctx = _click.Context(command, info_name=command.name)
    own, valued = _command_options(command, ctx)
    head, rest = words[:index], words[index:]
    kept: list[str] = []
    position = 0
    while position < len(rest):
        word = rest[position]
        if word == "--":
            kept += rest[position:]
            break
        name = word.split("=", 1)[0]
        if word in valued or (word.startswith("--") and name in valued and "=" not in word):
            kept += rest[position:position + 2]  # the option and its value, whatever the value looks like
            position += 2
            continue
        found = _global(word)
        if found is not None and found[0] not in own and word not in own:
            take = 2 if found[1] else 1
            if position + take > len(rest):
                raise UsageError(f"{word} needs a value", "Give the profile's name, e.g. --profile prod.")
            front += rest[position:position + take]
            position += take
            continue
        kept.append(word)
        position += 1
    return [*front, *head, *kept] if front else args
