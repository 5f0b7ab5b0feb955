"""Plain command-line values are converted without pydantic (start-up), exactly as typer converts them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from typer.main import get_command

from dasctl.cli import plain_values

probe = typer.Typer()


@probe.command()
def _every_kind(
    text: str = "",
    flag: bool = False,
    number: float = 1.0,
    speed: Annotated[float, typer.Option(min=0.0)] = 1.0,
    jobs: Annotated[int, typer.Option(min=1, max=256)] = 1,
    path: Path = Path("x"),
    texts: Annotated[list[str] | None, typer.Option()] = None,
    paths: Annotated[list[Path] | None, typer.Option()] = None,
) -> None:
    """Every kind of parameter dasctl's commands declare."""


VALUES: dict[str, list[Any]] = {
    "text": ["x", "", " a b ", "caf\u00e9", "a\udcff", "-"],
    "flag": [True, False, "yes", "0"],
    "number": ["1", "1.5", "-0", "+2", ".5", "5.", "1e3", "1E-2", " 1.5 ", "1_0", "inf", "nan", "1e400",
               "abc", "", 1.0, 2, True],
    "speed": ["0", "0.0", "-0.5", "-1", "2.5", "abc", "-inf", 0.0, 1.0],
    "jobs": ["1", "007", "+5", "256", "257", "0", "-1", "1.5", "abc", "1_0", "9" * 30, 4, True],
    "path": ["a.wav", "", "-", "a\udcff", "/", "/nonexistent/x"],
    "texts": [("a", "b"), ("a",), []],
    "paths": [("a.wav", "b.wav"), ("/",)],
}


def _converted(param: Any, value: Any) -> tuple[str, Any]:
    ctx = typer.Context(get_command(probe))
    try:
        result = param.get_runtime_param().coerce(value, param=param, ctx=ctx)
    except Exception as error:  # the same error, type and message, is what must come out
        return "error", (type(error).__name__, str(error))
    # repr: nan equals itself only so; the items' types: a list of str is not a list of Path
    return "value", (type(result).__name__, repr(result), [type(item).__name__ for item in result]
                     if isinstance(result, list) else None)


@pytest.mark.parametrize("name", sorted(VALUES))
def test_every_value_converts_as_typer_converts_it(name: str) -> None:
    typers_own = next(p for p in get_command(probe).params if p.name == name)
    plain = next(p for p in get_command(probe).params if p.name == name)
    plain_values.converting(plain)
    assert type(plain.get_runtime_param()).__name__ == "PlainValues"  # or the comparison proves nothing
    for value in VALUES[name]:
        assert _converted(plain, value) == _converted(typers_own, value), f"{name} = {value!r}"


PROBE = """
import sys
from dasctl.cli import main
code = main(sys.argv[1:])
sys.stderr.write("\\nPYDANTIC " + str("pydantic" in sys.modules) + "\\n")
"""


@pytest.mark.parametrize("argv", [
    ["config", "show", "--json"],
    ["credentials", "list", "--json"],
    ["-p", "local", "config", "get", "url"],
    ["transcode", "--help"],
])
def test_commands_with_plain_values_start_without_pydantic(argv: list[str], isolated_config: Path) -> None:
    result = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=30,
                            stdin=subprocess.DEVNULL)
    assert result.stderr.rsplit("PYDANTIC ", 1)[1].strip() == "False", result.stderr
    assert result.returncode == 0, result.stderr
    if argv[:2] == ["config", "show"]:
        assert json.loads(result.stdout)["profile"] == "local"


def test_a_value_that_is_not_plain_still_gets_typers_message(dasctl: Any) -> None:
    """--speed abc is converted by typer (pydantic) as before: dasctl's one plain line, exit 2."""
    result = dasctl("transcode", "in.wav", "out.wav", "--speed", "abc")
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == "dasctl: error: --speed 'abc' is not a number"
    result = dasctl("transcode", "in.wav", "out.wav", "--speed", "-2")
    assert result.returncode == 2
    assert "--speed -2" in result.stderr.splitlines()[0]
