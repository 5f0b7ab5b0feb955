"""`dasctl credentials key new|status` and `credentials rekey`: the store's key (dasctl/store/vault.py)."""

from __future__ import annotations

import os
import stat
from contextlib import closing
from pathlib import Path
from typing import Annotated

import typer

from dasctl.cli import common
from dasctl.cli.credentials.render import StoreKeyFileOption, open_store, write_lines
from dasctl.errors import UsageError

KEY_STATUS_SCHEMA = "dasctl.store-key-status/1"
REKEY_SCHEMA = "dasctl.store-rekey/1"


def key_new(
    file: Annotated[
        Path | None, typer.Argument(metavar="[FILE]", show_default=False,
                                    help="Write the key to this new file (0600; never over an existing one). "
                                         "Default: stdout.")
    ] = None,
) -> None:
    from dasctl.store.crypto import key_text, new_key
    from dasctl.store.vault import write_new_key_file

    key = new_key()
    if file is not None:
        try:
            write_new_key_file(file.expanduser(), key)
        except FileExistsError:
            raise UsageError(f"{file} already exists; not overwriting a key",
                             "A key replaced is every credential lost: choose another name.") from None
        except OSError as error:
            raise UsageError(f"cannot write {file}: {error.strerror}") from None
        common.say(f"{file}: a new store key (mode 0600). Keep a copy somewhere safe.")
        return
    environment = common.environment()
    if environment.stdout_isatty:
        raise UsageError("not printing a key on a terminal",
                         "Redirect it: dasctl credentials key new > store.key (or: key new FILE).")
    out = environment.stdout
    try:
        info = os.fstat(out.fileno())
        if stat.S_ISREG(info.st_mode):
            if info.st_size > 0:
                raise UsageError("stdout is a file that is not empty; not appending a key to it",
                                 "Write to a new file: dasctl credentials key new FILE.")
            os.fchmod(out.fileno(), 0o600)  # `> FILE` made it with the umask's mode
    except (AttributeError, OSError, ValueError):
        pass  # not a real file descriptor (a pipe wrapper in tests): nothing to protect
    out.write(key_text(key) + "\n")
    out.flush()


def key_status(
    as_json: common.JsonOption = False,
    store: common.StoreOption = None,
    store_key_file: StoreKeyFileOption = None,
) -> None:
    environment = common.environment()
    with closing(open_store(store, store_key_file)) as opened:
        status = opened.key_status()
    if as_json:
        write_lines(environment, [{"schema": KEY_STATUS_SCHEMA, **status}])
        return
    key = status["key"]
    store_line = f"store        {status['store']}"
    if opened.absent:  # the default store, not made yet: nothing for a key to open
        store_line += "  (not made yet: the first enrollment makes it)"
        from dasctl.store.vault import implicit_key_file

        kept = implicit_key_file(os.environ)
        found = f"(none yet: one is made with the store, in the OS keyring, else in {kept})"
    else:
        found = "(none found: give --store-key-file FILE or DASCTL_STORE_KEY)"
    lines = [store_line,
             f"key          {key['id'] or found}"
             + (f" from {key['source']}" if key["source"] else "")
             + ("" if key["opens"] or opened.absent or not key["id"] else "  (does NOT open this store)")]
    for data_key in [] if opened.absent else status["data_keys"]:
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(data_key["records"].items())) or "nothing yet"
        lines.append(f"data key {data_key['id']:<3} wrapped by key {data_key['kek_id']}: {counts}")
    if status["plaintext"]:
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(status["plaintext"].items()))
        lines.append(f"in the clear {counts} (sealed on the next open with the key)")
    environment.stdout.write("\n".join(lines) + "\n")


def rekey(
    new_key_file: Annotated[
        Path, typer.Option("--new-key-file", metavar="FILE",
                           help="The new key (dasctl credentials key new FILE).")
    ],
    as_json: common.JsonOption = False,
    store: common.StoreOption = None,
    store_key_file: StoreKeyFileOption = None,
) -> None:
    from dasctl.store.crypto import kek_id
    from dasctl.store.vault import read_key_file

    environment = common.environment()
    new_key = read_key_file(new_key_file.expanduser(), "--new-key-file",
                            lambda message: common.warn(message, environment.stderr))
    with closing(open_store(store, store_key_file)) as opened:
        rewrapped, already = opened.rekey(new_key)
        opened.audit("rekey", [], rewrapped, f"data keys re-wrapped under key id {kek_id(new_key)}")
    if as_json:
        write_lines(environment, [{"schema": REKEY_SCHEMA, "store": opened.location,
                                   "key_id": kek_id(new_key),
                                   "rewrapped": rewrapped, "already": already}])
        return
    common.say(f"{opened.location}: {rewrapped} data key(s) re-wrapped under key {kek_id(new_key)}"
               + (f", {already} already were" if already else "")
               + f". From now on pass --store-key-file {new_key_file} (or DASCTL_STORE_KEY_FILE).")
