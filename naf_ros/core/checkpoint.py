"""Atomic, versioned, checksummed checkpoints.

A killed process must never leave a half-written file where the last good one was: we write
to a temporary file, fsync, then rename. The payload carries a format version and a SHA-256
of its bytes, so truncation or corruption is a clear error instead of a confusing unpickle.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "naf_ros-checkpoint"
VERSION = 1
_MAGIC = b"NAFROSCK"


class CheckpointError(RuntimeError):
    """The checkpoint is missing, truncated, corrupted or of another version."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> int:
    """Write ``payload`` atomically; returns the number of bytes written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, "payload": payload}, buf)
    body = buf.getvalue()
    digest = hashlib.sha256(body).digest()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(_MAGIC + digest + body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(body) + len(_MAGIC) + len(digest)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and verify a checkpoint; raises :class:`CheckpointError` with a one-line reason."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror})") from None
    head = len(_MAGIC) + 32
    if len(raw) < head or not raw.startswith(_MAGIC):
        raise CheckpointError(f"{path}: not a naf_ros checkpoint (bad header or truncated)")
    digest, body = raw[len(_MAGIC) : head], raw[head:]
    if hashlib.sha256(body).digest() != digest:
        raise CheckpointError(f"{path}: checksum mismatch (truncated or corrupted)")
    try:
        data = torch.load(io.BytesIO(body), weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise CheckpointError(f"{path}: unreadable payload ({type(exc).__name__})") from None
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: version {data.get('version')!r} of {data.get('format')!r}, "
            f"this build reads version {VERSION}"
        )
    return data["payload"]
