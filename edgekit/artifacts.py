"""Atomic file writes and content hashes, shared by every stage."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from edgekit.errors import UserInputError


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then move the finished file into place, so readers never see half a file.

    The file ends with the mode a plain ``open(path, "w")`` would give it (0644 under umask 022), not
    mkstemp's 0600, so that CI can upload it and other users can read it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp_path = Path(tmp_name)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~current_umask())  # after write(): some writers replace the file
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
    return path


def make_output_dir(path: str | Path, what: str = "--out") -> Path:
    """Create the output directory ``path`` (and its parents) before any work starts.

    UserInputError (exit 2) naming ``what`` and the path when it is a file, lies below a file, or cannot
    be created or written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserInputError(f"{what} {path}: is a file, not a directory")
    blocking = _file_above(path)
    if blocking is not None:
        raise UserInputError(f"{what} {path}: {blocking} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserInputError(f"{what} {path}: cannot create the directory: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserInputError(f"{what} {path}: cannot write in the directory: permission denied")
    return path


def _file_above(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` when it is not a directory (then nothing can go below it)."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def write_json(path: str | Path, data: Any) -> Path:
    text = json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"
    return write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows (no window for other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_torch(path: str | Path, obj: Any) -> Path:
    """``torch.save`` with byte-identical output for identical content.

    Saved to a file path, torch names the zip records after that file, and write_atomically's
    temporary name is random: the same state dict never gave the same bytes, so every stage keyed on
    the file's hash reran. Saved to a buffer, the records are always named ``archive/``.
    """
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    return write_atomically(path, lambda tmp: tmp.write_bytes(data))


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(data: Any) -> str:
    """Hash of canonical JSON (sorted keys): equal content, equal key."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
