#!/usr/bin/env python3
"""Plant known bugs one at a time and check that the named tests catch each of them.

Usage: ``python scripts/mutants.py [--list] [-v] [-k SUBSTRING] [--timeout S]``

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

ROOT = Path(__file__).resolve().parents[1]
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
        raise SystemExit(
            f"mutant {m.name}: snippet found {count} times in {m.path} (expected once); "
            f"update the table in scripts/mutants.py\n  snippet: {m.old!r}"
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
        raise SystemExit(f"the copy does not import its own naf_ros (got {out})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="print the table and exit")
    ap.add_argument("-k", default="", help="only mutants whose name contains this")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per pytest run")
    ap.add_argument("-v", "--verbose", action="store_true", help="name the tests that fail")
    args = ap.parse_args(argv)
    chosen = [m for m in MUTANTS if args.k in m.name]
    if args.list:
        for m in chosen:
            print(f"{m.name:32s} {m.path:28s} {' '.join(m.tests):30s} {m.description}")
        return 0
    if not chosen:
        print(f"no mutant matches {args.k!r}", file=sys.stderr)
        return 2
    for m in chosen:  # every snippet must match once before anything runs
        apply(ROOT, m, write=False)
    all_tests = tuple(sorted({t for m in chosen for t in m.tests}))
    with tempfile.TemporaryDirectory(prefix="naf_ros_mutants_") as tmp:
        base = copy_repo(Path(tmp) / "baseline")
        check_imports_copy(base)
        status, out, secs = run_tests(base, all_tests, args.timeout)
        print(f"baseline (no mutation): {status} in {secs:.1f} s")
        if status != "passed":
            print(out[-3000:], file=sys.stderr)
            return 2
        survived = []
        for m in chosen:
            repo = copy_repo(Path(tmp) / m.name)
            apply(repo, m)
            status, out, secs = run_tests(repo, m.tests, args.timeout)
            verdict = {"failed": "killed", "timeout": "killed (timeout)", "passed": "SURVIVED"}
            word = verdict.get(status, status)
            print(f"{word:16s} {m.name:32s} {secs:5.1f} s  {m.description}", flush=True)
            if args.verbose and status == "failed":
                for name in failed_tests(out):
                    print(f"{'':17s}- {name}")
            if status == "passed":
                survived.append(m.name)
            elif status.startswith("error"):
                print(out[-3000:], file=sys.stderr)
                return 2
            shutil.rmtree(repo.parent)
    print(f"\n{len(chosen) - len(survived)}/{len(chosen)} mutants killed")
    if survived:
        print("survived: " + ", ".join(survived))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
