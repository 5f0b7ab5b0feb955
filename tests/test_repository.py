"""The repository explains itself: no reference to a file outside it, section references that resolve,
and the layering docs/architecture.md describes (the core never imports Typer or rich)."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).parent.parent

# Built from pieces so that this file does not trip its own check.
OUTSIDE_DOCUMENTS = [name + ".md" for name in ("PROTOCOL", "DESIGN", "STYLE")]
# the shared design documents, the development machine's workspace, and this checkout's own absolute path
OUTSIDE_PATHS = [".." + "/shared", "/" + "work/", str(ROOT) + "/"]


def repository_files() -> list[Path]:
    """Every file git tracks, and the new ones it would track (not ignored); the whole tree without git."""
    if shutil.which("git") and (ROOT / ".git").exists():
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True, timeout=30,
        ).stdout
        names = sorted({name for name in listed.decode().split("\0") if name})
        return [ROOT / name for name in names if (ROOT / name).is_file()]
    skipped = {".git", ".venv", "build", ".pytest_cache", "__pycache__", ".demo"}
    return sorted(
        path for path in ROOT.rglob("*")
        if path.is_file() and not skipped.intersection(path.relative_to(ROOT).parts)
    )


def text_of(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None  # binary fixtures (WAV files): nothing to read


def test_the_scan_sees_the_repository() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in repository_files()}
    assert {"README.md", "Makefile", "docs/protocol.md", "docs/architecture.md", "tests/conftest.py"} <= names


def test_nothing_refers_to_a_file_outside_the_repository() -> None:
    offenders = []
    for path in repository_files():
        text = text_of(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for needle in (*OUTSIDE_DOCUMENTS, *OUTSIDE_PATHS):
                if needle in line:
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {needle!r} in {line.strip()[:100]}")
    assert not offenders, (
        "the repository must explain itself: refer to docs/protocol.md (the wire protocol) or "
        "docs/architecture.md (the code, the output contract, exit codes) instead:\n" + "\n".join(offenders)
    )


SECTION_REFERENCE = re.compile(r"docs/(protocol|architecture)\.md §(\d+(?:\.\d+)?)")


def headings(document: str) -> set[str]:
    """Section numbers of a document's headings: `## 4. Audio channel` -> 4, `### 4.2 ...` -> 4.2."""
    return set(re.findall(r"^#{2,4} (\d+(?:\.\d+)?)\.? ", document, re.MULTILINE))


def test_every_section_reference_names_a_section_that_exists() -> None:
    sections = {
        name: headings((ROOT / "docs" / f"{name}.md").read_text()) for name in ("protocol", "architecture")
    }
    assert {"1", "2", "3.1", "3.2", "3.3", "4.1", "4.2", "5", "6", "7"} <= sections["protocol"]
    dangling = []
    for path in repository_files():
        text = text_of(path)
        for document, section in SECTION_REFERENCE.findall(text or ""):
            if section not in sections[document]:
                dangling.append(f"{path.relative_to(ROOT)}: docs/{document}.md §{section}")
    assert not dangling, "references to sections that do not exist:\n" + "\n".join(dangling)


def imported_modules(source: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_the_core_never_imports_typer_or_rich() -> None:
    """Also imports inside functions: the core must work where neither is installed or wanted."""
    core = [
        path for path in sorted((ROOT / "dasctl").rglob("*.py"))
        if path.relative_to(ROOT / "dasctl").parts[0] not in ("cli", "display")
    ]
    assert len(core) > 20
    offenders = [
        str(path.relative_to(ROOT)) for path in core
        if {"typer", "rich", "click"} & imported_modules(path.read_text())
    ]
    assert not offenders, f"only dasctl/cli/ and dasctl/display/ may import typer or rich: {offenders}"


def dasctl_imports(source: str) -> set[str]:
    """The dasctl modules a source imports: `from dasctl import config` -> dasctl.config."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "dasctl":
                found.update(f"dasctl.{alias.name}" for alias in node.names)
            elif node.module.startswith("dasctl."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("dasctl."))
    return found


def test_the_emulator_and_the_client_share_constants_never_protocol_code() -> None:
    """docs/architecture.md §1: the emulator must catch the client's mistakes, so it cannot reuse them."""
    shared = {"dasctl.config", "dasctl.events", "dasctl.logs"}
    emulator = sorted((ROOT / "dasctl" / "emulator").rglob("*.py"))
    assert emulator
    borrowed = {
        f"{path.relative_to(ROOT)}: {name}" for path in emulator for name in dasctl_imports(path.read_text())
        if name not in shared and not name.startswith("dasctl.emulator")
    }
    assert not borrowed, borrowed
    client = [
        path for path in (ROOT / "dasctl").rglob("*.py")
        if "emulator" not in path.relative_to(ROOT).parts and path.name != "serve.py"
    ]
    reaching_in = [str(path.relative_to(ROOT)) for path in client
                   if any(name.startswith("dasctl.emulator") for name in dasctl_imports(path.read_text()))]
    assert not reaching_in, reaching_in


def test_terminal_tests_drive_tmux_only_through_the_shared_harness() -> None:
    """A tmux command outside tests/tmux_server.py could land on the developer's own server (no -L) and
    outlive the test; the harness gives every test a private server, killed at teardown."""
    harness = ROOT / "tests" / "tmux_server.py"
    offenders = [
        str(path.relative_to(ROOT)) for path in sorted((ROOT / "tests").glob("*.py"))
        if path != harness and re.search(r"""\[\s*["']tmux["']""", path.read_text())
    ]
    assert not offenders, f"use the tmux_server fixture (tests/tmux_server.py) instead: {offenders}"
