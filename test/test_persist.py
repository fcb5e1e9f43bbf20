"""Checkpoint files of the nodes (:class:`naf_ros.ros.persist.CheckpointFile`) without DDS.

A node keeps its newest checkpoint and the one before (``.prev``); a damaged or foreign newest
one is set aside and the previous one loaded, and a save that cannot be written is counted,
never raised, so a node keeps running on a full or read-only disk.
"""

from __future__ import annotations

from pathlib import Path

from naf_ros.ros.persist import CheckpointFile


def lines_of(log: list[str], text: str) -> list[str]:
    return [line for line in log if text in line]


def test_checkpoint_keeps_prev_and_falls_back_to_it(tmp_path):
    log: list[str] = []
    ck = CheckpointFile(tmp_path / "node.pt", log.append)
    assert ck.save({"n": 1}) and not ck.prev.exists()  # nothing known good to keep yet
    assert ck.save({"n": 2}) and ck.prev.exists()
    assert ck.save({"n": 3})
    got = []
    assert CheckpointFile(tmp_path / "node.pt").load(got.append) == ck.path and got == [{"n": 3}]

    prev_bytes = ck.prev.read_bytes()
    ck.path.write_bytes(ck.path.read_bytes()[:-10])  # truncated newest
    got.clear()
    fresh = CheckpointFile(tmp_path / "node.pt", log.append)
    assert fresh.load(got.append) == fresh.prev and got == [{"n": 2}]
    assert len(lines_of(log, "checkpoint unusable")) == 1, log
    assert "checksum mismatch" in log[0] and "trying node.pt.prev" in log[0]
    (bad,) = tmp_path.glob("node.pt.bad-*")
    assert not ck.path.exists() and ck.prev.read_bytes() == prev_bytes  # nothing overwritten
    # The next save writes a new newest and keeps .prev as it was until the one after.
    assert fresh.save({"n": 4}) and ck.prev.read_bytes() == prev_bytes
    assert fresh.save({"n": 5})
    got.clear()
    CheckpointFile(tmp_path / "node.pt").load(got.append)
    assert got == [{"n": 5}] and bad.exists()


def test_version_mismatch_and_misfit_payloads_fall_back(tmp_path):
    import hashlib
    import io

    import torch

    from naf_ros.core import checkpoint as core_ckpt

    log: list[str] = []
    ck = CheckpointFile(tmp_path / "node.pt", log.append)
    ck.save({"kind": "mine", "n": 1})
    ck.save({"kind": "mine", "n": 2})
    # A checkpoint from a future format: intact, but version 99.
    buf = io.BytesIO()
    torch.save({"format": core_ckpt.FORMAT, "version": 99, "payload": {}}, buf)
    body = buf.getvalue()
    ck.path.write_bytes(core_ckpt._MAGIC + hashlib.sha256(body).digest() + body)

    def apply(p: dict) -> None:
        if p.get("kind") != "mine":
            raise ValueError(f"kind {p.get('kind')!r}")
        got.append(p["n"])

    got: list[int] = []
    assert CheckpointFile(tmp_path / "node.pt", log.append).load(apply).name == "node.pt.prev"
    assert got == [1] and "version 99" in log[0] and len(log) == 1
    # A payload the node cannot use (wrong kind) is set aside the same way.
    other = CheckpointFile(tmp_path / "other.pt")
    other.save({"kind": "theirs"})
    log.clear()
    assert CheckpointFile(tmp_path / "other.pt", log.append).load(apply) is None
    assert "ValueError: kind 'theirs'" in log[0] and "starting fresh" in log[0]


def test_unmovable_bad_checkpoint_blocks_saving(tmp_path, monkeypatch):
    ck = CheckpointFile(tmp_path / "node.pt")
    ck.path.write_bytes(b"garbage")

    def refuse(self, target):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "rename", refuse)
    log: list[str] = []
    ck = CheckpointFile(tmp_path / "node.pt", log.append)
    assert ck.load(lambda p: None) is None and "could not be moved aside" in log[0]
    assert not ck.save({"n": 1}) and "not saving over it" in ck.last_error
    assert ck.path.read_bytes() == b"garbage"


def test_failed_saves_are_counted_not_raised(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    ck = CheckpointFile(blocker / "run" / "node.pt")  # parent is a file: nothing can be made
    assert not ck.save({"n": 1}) and not ck.save({"n": 2})
    assert ck.failures == 2 and ck.saves == 0 and "cannot write" in ck.last_error
    assert ck.diagnostics()["checkpoint_failures"] == 2


def test_read_only_folder(tmp_path):
    """Saving into a read-only run folder fails cleanly (``read_only`` makes it unwritable for
    root too, or raises: a fault that cannot be set up fails the test, never skips it)."""
    from support.faults import read_only

    with read_only(tmp_path):
        ck = CheckpointFile(tmp_path / "node.pt")
        assert not ck.save({"n": 1}) and ck.failures == 1
        assert not list(tmp_path.iterdir())
