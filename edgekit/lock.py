"""One build at a time per build directory: a lock file in ``DIR/.edgekit/lock``.

The lock is an ``fcntl.flock`` on that file, so the kernel releases it when its process ends, however it
ends. The file holds the holder's pid, host, start time and command while the lock is held, and is
emptied on release: a file that still holds them when its lock is free was left by a build that died,
and the next build takes it over with a message.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from edgekit.errors import UserInputError, excerpt

LOCK_NAME = Path(".edgekit") / "lock"

#: lock files this process holds (resolved path -> file descriptor): taking a held lock again is a no-op
_HELD: dict[Path, int] = {}


def lock_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / LOCK_NAME


@contextmanager
def build_lock(out_dir: str | Path, *, command: str | None = None,
               log: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold the build directory ``out_dir`` for the duration of the block.

    UserInputError (exit 2) naming the holder's pid, host and start time when another process holds it.
    Re-entrant within one process (the CLI and the pipeline may both take it).
    """
    path = lock_path(out_dir)
    key = path.resolve()
    if key in _HELD:
        yield path
        return
    handle = _open_lock_file(path)
    try:
        _take(handle, path, command, log or _to_stderr)
        _HELD[key] = handle
        try:
            yield path
        finally:
            del _HELD[key]
            os.ftruncate(handle, 0)  # released cleanly: nothing for the next build to take over
    finally:
        os.close(handle)  # closing the file releases the flock


def _open_lock_file(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise UserInputError(f"build directory {path.parent.parent}: cannot create its lock file {path}: "
                             f"{exc.strerror or exc}") from None


def _take(handle: int, path: Path, command: str | None, log: Callable[[str], None]) -> None:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
            raise UserInputError(f"build directory {path.parent.parent}: cannot lock {path}: "
                                 f"{exc.strerror or exc}") from None
        raise UserInputError(f"build directory {path.parent.parent} is in use by "
                             f"{describe_holder(_read_holder(handle))}; wait for it to finish, "
                             f"or build into another directory with --out") from None
    previous = _read_holder(handle)
    if previous:
        log(f"edgekit: taking over the lock on {path.parent.parent} left by "
            f"{describe_holder(previous)}: that process is gone")
    _write_holder(handle, command)


def _read_holder(handle: int) -> dict:
    """What the lock file says about its holder ({} when it is empty or unreadable)."""
    os.lseek(handle, 0, os.SEEK_SET)
    text = os.read(handle, 4096)
    if not text.strip():
        return {}
    try:
        holder = json.loads(text)
    except ValueError:
        return {"unreadable": True}
    return holder if isinstance(holder, dict) else {"unreadable": True}


def _write_holder(handle: int, command: str | None) -> None:
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command if command is not None else " ".join(sys.argv),
    }
    os.ftruncate(handle, 0)
    os.lseek(handle, 0, os.SEEK_SET)
    os.write(handle, (json.dumps(holder) + "\n").encode())


def describe_holder(holder: dict) -> str:
    """``pid 123 on host h since 2026-12-02T06:00:00+0000 (edgekit build r.yaml)``, from what is known."""
    if not holder or holder.get("unreadable"):
        return "another process (its lock file does not say which)"
    words = [f"pid {holder.get('pid', '?')}"]
    if holder.get("host"):
        words.append(f"on {holder['host']}")
    if holder.get("started"):
        words.append(f"since {holder['started']}")
    if holder.get("command"):
        words.append(f"({excerpt(' '.join(str(holder['command']).split()), 120)})")
    return " ".join(words)


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)
