"""Writing the small files the tools keep (password, SCRAM and API key files)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def replace_lines(path: Path, lines: list[str], mode: int) -> None:
    """Replace `path` atomically with `lines`, with permissions `mode`: a
    temporary file in the same folder, synced, then renamed over it (a crash
    leaves the old file or the new one, never half of one). OSError names the
    path that could not be written."""
    text = "".join(f"{line}\n" for line in lines)
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise OSError(f"cannot write beside {path}: {exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), mode)
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise OSError(f"cannot write {path}: {exc}") from None
