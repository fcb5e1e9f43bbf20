"""Plant known bugs one at a time and check that the named tests catch each of them.

Usage: ``naf-ros bench mutants [--list] [-v] [-k SUBSTRING] [--timeout S] [--out DIR]``

Why a benchmark suite and not a test: every mutant is a full pytest run in its own copy of
the repository (about 2 minutes for the table on two cores), and what it measures is the
suite's strength, a figure to keep with the others in BENCHMARKS.md. The cheap half, that
every snippet still matches the code exactly once, is a test
(``test/test_bench_mutants.py``), so a refactor cannot orphan a mutant unnoticed. It needs a
source checkout (the tests are not installed with the package).

Each mutant is an exact text substitution in one file of the package. For every mutant the
repository is copied to a temporary directory, the snippet is replaced (the script stops
with an error if the snippet is missing or ambiguous, so a refactor that moves the code is
noticed instead of silently testing nothing), and the mutant's tests run there with pytest.
A mutant is *killed* if pytest fails, *survived* if it passes. Before any mutant, the same
tests run on an unmodified copy and must pass, and the copy must be the code pytest imports.
Exit status: 0 if every mutant is killed, 1 if any survived, 2 on a setup error.

The table is the regression record for issue #15: each row is a bug seen in public NAF /
GPS code or planted by a review, and the test file(s) that must kill it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from naf_ros.bench.common import finish

ROOT = Path(__file__).resolve().parents[2]  # the checkout that holds naf_ros/ and test/
IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "install",
    "log",
    "runs",
    "bench_results",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "*.egg-info",
    "mutants",
)

ILQG = "test/test_oracles_ilqg.py"
PRIOR = "test/test_oracles_prior.py"
NAF = "test/test_oracles_naf.py"
DELIVERY = "test/test_delivery.py"
REMATCH = "test/test_rematch.py"


class SetupError(Exception):
    """The run cannot start or cannot be trusted (a stale snippet, no checkout, ...)."""


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    description: str


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "ilqg_offset_dropped",
        "naf_ros/core/ilqg.py",
        "q = c[t] + Ft.T @ (V @ ft + v)",
        "q = c[t] + Ft.T @ v",
        (ILQG,),
        "iLQG backward pass ignores the dynamics offset f_t",
    ),
    Mutant(
        "ilqg_eta_not_on_linear_cost",
        "naf_ros/core/ilqg.py",
        "c = c / eta + m",
        "c = c + m",
        (ILQG,),
        "KL-augmented cost divides only the quadratic part of the cost by eta",
    ),
    Mutant(
        "ilqg_value_cross_term_dropped",
        "naf_ros/core/ilqg.py",
        "v = q[:nx] + Q[:nx, nx:] @ at",
        "v = q[:nx]",
        (ILQG,),
        "value-function linear term misses the Q_xu a_t cross term",
    ),
    Mutant(
        "niw_mean_term_dropped",
        "naf_ros/core/dynamics.py",
        "sigma = (phi + n * emp + (n * m / (n + m)) * np.outer(dm, dm)) / (n + n0)",
        "sigma = (phi + n * emp) / (n + n0)",
        (PRIOR,),
        "NIW posterior drops the n m/(n+m) (mean - mu0)(mean - mu0)^T term",
    ),
    Mutant(
        "niw_emp_misweighted",
        "naf_ros/core/dynamics.py",
        "sigma = (phi + n * emp + (n * m / (n + m))",
        "sigma = (phi + emp + (n * m / (n + m))",
        (PRIOR,),
        "NIW posterior weighs the empirical covariance like one sample instead of n",
    ),
    Mutant(
        "niw_denominator",
        "naf_ros/core/dynamics.py",
        "* np.outer(dm, dm)) / (n + n0)",
        "* np.outer(dm, dm)) / n",
        (PRIOR,),
        "NIW posterior normalises by n instead of n + n0 (noise covariance too large)",
    ),
    Mutant(
        "niw_mean_strength_swapped",
        "naf_ros/core/dynamics.py",
        "(n * m / (n + m))",
        "(n * n0 / (n + n0))",
        (PRIOR,),
        "NIW mean term uses the covariance strength n0 instead of the mean strength m",
    ),
    Mutant(
        "reg_whole_block",
        "naf_ros/core/linalg.py",
        "szz = sigma[:n_in, :n_in] + reg * np.eye(n_in)",
        "szz = sigma[:n_in, :n_in] + reg",
        (PRIOR,),
        "reg added to every entry of the [x; u] block instead of its diagonal",
    ),
    Mutant(
        "naf_target_is_online_net",
        "naf_ros/core/naf_fast.py",
        "= value_trunk(target)",
        "= value_trunk(net)",
        (NAF,),
        "TD target bootstraps from the online network instead of the target network",
    ),
    Mutant(
        "naf_terminal_ignored_fast",
        "naf_ros/core/naf_fast.py",
        "torch.sub(s.ones_b, terminal, out=s.not_done)",
        "s.not_done.fill_(1.0)",
        (NAF,),
        "TD target bootstraps through true terminals (the fast update path)",
    ),
    Mutant(
        "naf_target_is_online_net_autograd",
        "naf_ros/core/naf.py",
        "next_value = self.target.value(next_obs)",
        "next_value = self.net.value(next_obs)",
        (NAF,),
        "the same, on the autograd path (batch-norm networks)",
    ),
    Mutant(
        "naf_mask_plus",
        "naf_ros/core/naf.py",
        "return reward + gamma * (1.0 - terminal) * next_value",
        "return reward + gamma * (1.0 - terminal) + next_value",
        (NAF,),
        "TD target gamma*mask + V (plus instead of times)",
    ),
    Mutant(
        "naf_terminal_ignored",
        "naf_ros/core/naf.py",
        "return reward + gamma * (1.0 - terminal) * next_value",
        "return reward + gamma * next_value",
        (NAF,),
        "TD target bootstraps through true terminals",
    ),
    Mutant(
        "naf_truncation_is_terminal",
        "naf_ros/core/trainer.py",
        '"terminal": bool(terminated),',
        '"terminal": bool(terminated or truncated),',
        (NAF,),
        "time-limit truncation stored as terminal (no bootstrap)",
    ),
    Mutant(
        "naf_elementwise_llt_advantage",
        "naf_ros/core/networks.py",
        "z = (lower.transpose(-1, -2) @ (action - mu).unsqueeze(-1)).squeeze(-1)",
        "z = (lower.transpose(-1, -2).diagonal(dim1=-2, dim2=-1) * (action - mu))",
        (NAF,),
        "advantage uses the elementwise L*L^T (a diagonal P)",
    ),
    Mutant(
        "naf_elementwise_llt_precision",
        "naf_ros/core/networks.py",
        "return lower @ lower.transpose(-1, -2)",
        "return lower * lower.transpose(-1, -2)",
        (NAF,),
        "precision() returns the elementwise L*L^T",
    ),
    Mutant(
        "naf_soft_update_tau_swapped",
        "naf_ros/core/naf.py",
        "self._target_flat.lerp_(self._flat, tau)",
        "self._target_flat.lerp_(self._flat, 1.0 - tau)",
        (NAF,),
        "soft update theta' <- (1 - tau) theta + tau theta'",
    ),
    Mutant(
        "ou_theta_sign",
        "naf_ros/core/noise.py",
        "self.state = (1.0 - self.theta) * self.state + self.innovation(lower)",
        "self.state = (1.0 + self.theta) * self.state + self.innovation(lower)",
        (NAF,),
        "OU noise with the sign of theta flipped (explodes instead of reverting)",
    ),
    Mutant(
        "precision_noise_uses_p",
        "naf_ros/core/noise.py",
        "y = solve_upper(lower.T, self.rng.standard_normal(self.act_dim))",
        "y = lower @ self.rng.standard_normal(self.act_dim)",
        (NAF,),
        "precision noise with covariance P instead of P^-1",
    ),
    Mutant(
        "fallback_resend_not_counted",
        "naf_ros/core/delivery.py",
        "if fallback and batch:",
        "if False:",
        (DELIVERY,),
        "unacknowledged fallback re-sends are never counted (the writer is never replaced)",
    ),
    Mutant(
        "unpaired_reader_kept",
        "naf_ros/ros/rematch.py",
        "if not self.watch.due(self.listed, self.matched, now):",
        "if True:",
        (REMATCH,),
        "the learner keeps a transitions reader that never paired with a listed writer",
    ),
    Mutant(
        "ignored_writer_kept",
        "naf_ros/ros/policy/transitions.py",
        "if n > 0 and self.producer.fruitless >= n:",
        "if False:",
        (REMATCH,),
        "the policy keeps a writer whose re-sends a live learner never takes",
    ),
)


def copy_repo(dest: Path) -> Path:
    target = dest / "repo"
    shutil.copytree(ROOT, target, ignore=IGNORE)
    return target


def apply(repo: Path, m: Mutant, write: bool = True) -> None:
    path = repo / m.path
    text = path.read_text() if path.is_file() else ""
    count = text.count(m.old)
    if count != 1:
        raise SetupError(
            f"mutant {m.name}: snippet found {count} times in {m.path} (expected once); "
            f"update MUTANTS in naf_ros/bench/mutants.py: {m.old!r}"
        )
    if write:
        path.write_text(text.replace(m.old, m.new))


def run_tests(repo: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, str, float]:
    """('passed' | 'failed' | 'timeout', output, seconds); all tests run (no -x), so the
    report can say which of them catch the mutant."""
    env = dict(os.environ, PYTHONPATH=str(repo), PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", *tests]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return "timeout", out, time.monotonic() - t0
    # 1: tests failed; 2: interrupted, e.g. a collection (import) error caused by the mutant.
    # 3-5 (internal error, usage error such as a missing test file, no tests) are set-up errors.
    status = "passed" if proc.returncode == 0 else "failed"
    if proc.returncode not in (0, 1, 2):
        status = f"error (pytest exit {proc.returncode})"
    return status, proc.stdout + proc.stderr, time.monotonic() - t0


def failed_tests(output: str) -> list[str]:
    """Test names from pytest's short summary ('FAILED path::name - reason')."""
    names = []
    for line in output.splitlines():
        if line.startswith("FAILED "):
            names.append(line.split()[1].split("::", 1)[-1])
    return names


def check_imports_copy(repo: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(repo))
    out = subprocess.run(
        [sys.executable, "-c", "import naf_ros; print(naf_ros.__file__)"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(out).resolve().is_relative_to(repo.resolve()):
        raise SetupError(f"the copy does not import its own naf_ros (got {out})")


def check_snippets(chosen: list[Mutant]) -> None:
    """Every snippet matches its file exactly once and every named test file exists."""
    for m in chosen:
        apply(ROOT, m, write=False)
        for test in m.tests:
            if not (ROOT / test).is_file():
                raise SetupError(f"mutant {m.name}: test file {test} does not exist")


def run(chosen: list[Mutant], timeout: float, verbose: bool) -> dict:
    """The baseline, then each mutant in its own copy; returns the JSON record."""
    all_tests = tuple(sorted({t for m in chosen for t in m.tests}))
    record: dict = {"suite": "mutants", "mutants": []}
    with tempfile.TemporaryDirectory(prefix="naf_ros_mutants_") as tmp:
        base = copy_repo(Path(tmp) / "baseline")
        check_imports_copy(base)
        status, out, secs = run_tests(base, all_tests, timeout)
        print(f"baseline (no mutation): {status} in {secs:.1f} s")
        if status != "passed":
            print(out[-3000:], file=sys.stderr)
            raise SetupError(f"the unmutated tests do not pass ({status}): {' '.join(all_tests)}")
        record["baseline_s"] = round(secs, 1)
        for m in chosen:
            repo = copy_repo(Path(tmp) / m.name)
            apply(repo, m)
            status, out, secs = run_tests(repo, m.tests, timeout)
            if status.startswith("error"):
                print(out[-3000:], file=sys.stderr)
                raise SetupError(f"mutant {m.name}: pytest could not run the tests ({status})")
            verdict = {"failed": "killed", "timeout": "killed (timeout)", "passed": "SURVIVED"}
            word = verdict[status]
            print(f"{word:16s} {m.name:32s} {secs:5.1f} s  {m.description}", flush=True)
            killers = failed_tests(out) if status == "failed" else []
            if verbose:
                for name in killers:
                    print(f"{'':17s}- {name}")
            record["mutants"].append(
                {
                    "name": m.name, "path": m.path, "description": m.description,
                    "tests": list(m.tests), "verdict": word, "killed_by": killers,
                    "seconds": round(secs, 1),
                }
            )  # fmt: skip
            shutil.rmtree(repo.parent)
    return record


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 every mutant killed, 1 any survived, 2 set-up error (one line)."""
    ap = argparse.ArgumentParser(prog="naf-ros bench mutants", description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="print the table and exit")
    ap.add_argument("-k", default="", help="only mutants whose name contains this")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per pytest run")
    ap.add_argument("-v", "--verbose", action="store_true", help="name the tests that fail")
    ap.add_argument("--out", type=Path, default=Path("bench_results/mutants"))
    args = ap.parse_args(argv)
    chosen = [m for m in MUTANTS if args.k in m.name]
    try:
        if not (ROOT / "test").is_dir():
            raise SetupError(f"bench mutants needs a source checkout: no test/ in {ROOT}")
        if not chosen:
            raise SetupError(f"no mutant matches {args.k!r}")
        check_snippets(chosen)  # before anything runs
        if args.list:
            for m in chosen:
                print(f"{m.name:32s} {m.path:28s} {' '.join(m.tests):30s} {m.description}")
            return 0
        record = run(chosen, args.timeout, args.verbose)
    except SetupError as exc:
        print(f"naf-ros bench mutants: {exc}", file=sys.stderr)
        return 2
    survived = [r["name"] for r in record["mutants"] if r["verdict"] == "SURVIVED"]
    record["killed"] = len(chosen) - len(survived)
    record["total"] = len(chosen)
    finish("mutants", args.out, record, "planted bugs")
    print(f"\n{record['killed']}/{record['total']} mutants killed")
    print(f"wrote {args.out}/")
    if survived:
        print("survived: " + ", ".join(survived))
        return 1
    return 0
