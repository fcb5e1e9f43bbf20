"""``naf-ros bench mutants``: the planted-bug table stays attached to the code it mutates.

The full table (every mutant against its oracle tests, about 1.5 min) is a benchmark whose
figure lives in ``docs/testing.md``; here, cheaply and in every run: each snippet still
matches its file exactly once (a refactor that moves the code must update the table, not
leave a mutant that tests nothing), a stale one stops the command with one line and writes
nothing, and one mutant goes through the whole machinery and is killed by the named test.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from naf_ros.bench import mutants
from naf_ros.bench.mutants import MUTANTS, SetupError, check_snippets


def test_every_snippet_matches_its_file_once_and_every_test_file_exists():
    check_snippets(list(MUTANTS))
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)
    # Every mutation changes the code (an identity substitution would "survive" or be noise).
    assert all(m.old != m.new for m in MUTANTS)


def test_a_stale_snippet_is_one_line_and_nothing_is_written(tmp_path, monkeypatch, capsys):
    stale = replace(MUTANTS[0], name="stale_one", old="this text is in no file")
    monkeypatch.setattr(mutants, "MUTANTS", (stale,))
    with pytest.raises(SetupError):
        check_snippets([stale])
    out = tmp_path / "out"
    assert mutants.main(["-k", "stale", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "stale_one" in err, err
    assert not out.exists()


def test_a_planted_bug_is_killed_by_its_oracle(tmp_path, capsys):
    """iLQG without the dynamics offset: the augmented-Riccati oracle must fail on it."""
    out = tmp_path / "out"
    assert mutants.main(["-k", "ilqg_offset_dropped", "--out", str(out)]) == 0
    record = json.loads((out / "mutants.json").read_text())
    assert record["killed"] == record["total"] == 1
    (row,) = record["mutants"]
    assert row["verdict"] == "killed"
    assert "test_backward_pass_with_offsets_matches_augmented_riccati" in row["killed_by"]
