"""Shell completion of option and argument values, attached in one place to the whole command tree.

Typer completes commands and option names by itself; values come from here, by what a parameter is
(its name and the command it belongs to), so a command added later with a `speaker` argument or a
`--model-hash` option completes too:

- choices: `--format ndjson|csv`, config keys, the emulator's fault events, and any metavar that lists
  lower-case choices (`a|b`);
- speaker ids and model hashes from the credential store (the profile's, or --store on the line):
  bounded, since it runs on every <Tab>: at most COMPLETION_SECONDS, at most COMPLETION_LIMIT words,
  and nothing (rather than a hang) when the store is slow or unreachable.

Cheap imports only: no numpy, socketio or audio libraries.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from typer import _click
from typer.core import TyperGroup

#: a <Tab> never waits longer than this for the store (DASCTL_COMPLETION_SECONDS moves it: a slow
#: network store, or a test suite on a loaded machine asserting what the lookup finds, not how fast)
COMPLETION_SECONDS = 0.2
#: and never offers more words than this
COMPLETION_LIMIT = 200

Completer = Callable[[_click.Context, Any, str], list[str]]

#: choices of options whose metavar does not list them: (command path, parameter name) -> values
CHOICES: dict[tuple[tuple[str, ...], str], tuple[str, ...]] = {
    (("credentials", "export"), "format"): ("ndjson", "csv"),
}


def _starting(words: Iterable[str], incomplete: str) -> list[str]:
    return [word for word in words if word.startswith(incomplete)][:COMPLETION_LIMIT]


def _choices(values: Iterable[str]) -> Completer:
    fixed = tuple(values)

    def complete(ctx: _click.Context, param: Any, incomplete: str) -> list[str]:
        return _starting(fixed, incomplete)

    return complete


def _metavar_choices(param: Any) -> tuple[str, ...]:
    """`twilio|audiohook` -> both; placeholders in capitals (`FILE|-`, `mix|left|right|N`) are not words."""
    metavar = getattr(param, "metavar", None) or ""
    if "|" not in metavar:
        return ()
    return tuple(part for part in metavar.split("|") if part and part == part.lower() and part != "-")


def _completion_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get("DASCTL_COMPLETION_SECONDS", COMPLETION_SECONDS)))
    except ValueError:
        return COMPLETION_SECONDS


def _bounded(lookup: Callable[[], list[str]]) -> list[str]:
    """The lookup's words, or none when it takes longer than COMPLETION_SECONDS or fails. A daemon thread:
    a store that hangs is left behind when the shell's completion process exits."""
    found: list[list[str]] = []

    def run() -> None:
        try:
            found.append(lookup())
        except Exception:  # a broken store or profile must not break the user's shell
            found.append([])

    worker = threading.Thread(target=run, name="dasctl-completion", daemon=True)
    worker.start()
    worker.join(_completion_seconds())
    return found[0] if found else []


def _line_value(ctx: _click.Context, name: str) -> Any:
    """A value given earlier on the command line (`--store X`, `--profile P`), in this or a parent context."""
    context: _click.Context | None = ctx
    while context is not None:
        value = context.params.get(name)
        if value:
            return value
        context = context.parent
    return None


def _open_store(ctx: _click.Context) -> Any:
    from dasctl.config import load_profile
    from dasctl.store import open_store

    store = _line_value(ctx, "store")
    if store:
        return open_store(str(store))
    profile = load_profile(_line_value(ctx, "profile"))
    return open_store(profile.store)


def complete_speaker(ctx: _click.Context, param: Any, incomplete: str) -> list[str]:
    """Speaker ids kept in the store, starting with what was typed."""

    def lookup() -> list[str]:
        store = _open_store(ctx)
        try:
            return list(store.speaker_ids(incomplete, COMPLETION_LIMIT))
        finally:
            store.close()

    return _bounded(lookup)


def complete_model(ctx: _click.Context, param: Any, incomplete: str) -> list[str]:
    """Model hashes of the store's current credentials, and the profile's own."""

    def lookup() -> list[str]:
        from dasctl.config import load_profile

        models: set[str] = set()
        try:
            own = load_profile(_line_value(ctx, "profile")).model_hash
            models |= {own} if own else set()
        except Exception:
            pass
        store = _open_store(ctx)
        try:
            models |= {name for name in store.current_models() if name}
        finally:
            store.close()
        return _starting(sorted(models), incomplete)

    return _bounded(lookup)


def _config_keys() -> tuple[str, ...]:
    from dasctl.config import CONFIG_KEYS, TOP_LEVEL_KEYS

    return (*CONFIG_KEYS, *TOP_LEVEL_KEYS)


def _completer(path: tuple[str, ...], param: Any) -> Completer | None:
    name = param.name or ""
    if (path, name) in CHOICES:
        return _choices(CHOICES[(path, name)])
    if path[:1] == ("config",) and name == "key":
        return _choices(_config_keys())
    if name == "fault_error_event":
        from dasctl.events import ERROR_EVENTS, RESULT_EVENTS

        return _choices(event for event in (*ERROR_EVENTS, *RESULT_EVENTS) if event != "result-success")
    if name == "speaker" and path[:1] != ("serve",):
        return complete_speaker
    if name in ("model_hash", "stale_for") and path[:1] != ("serve",):
        return complete_model
    listed = _metavar_choices(param)
    return _choices(listed) if listed else None


def attach(command: _click.Command, path: tuple[str, ...] = ()) -> None:
    """Give every parameter of the tree that has no completion of its own the values it can take."""
    for param in command.params:
        if getattr(param, "_custom_shell_complete", None) is not None:
            continue
        completer = _completer(path, param)
        if completer is not None:
            param._custom_shell_complete = completer  # type: ignore[attr-defined]
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            attach(sub, (*path, name))
