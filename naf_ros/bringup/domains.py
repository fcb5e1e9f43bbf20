"""Exclusive ROS domain ids for graphs that share one machine (benchmarks and tests).

Why: two node graphs on one domain see each other's topics, so concurrent benchmark runs,
pytest runs and xdist workers would feed each other's nodes. Each id is held through an
``flock`` on its own lock file, which the kernel drops when the holder dies, so a crashed
run never keeps an id. Benchmarks and tests use disjoint ranges (tests 50-99, benchmarks
40-48) but the same lock files, so neither can take an id the other holds.

Why these ranges: DDS derives its UDP ports from the domain id (7400 + 250 * id, plus a
few per participant). Above id 101 they fall inside Linux's ephemeral port range
(32768-60999), where any socket on the machine, a Fast DDS participant's own sending sockets
included, may already hold the port a participant computes (ROS 2 docs, "About Domain ID":
choose 0-101). The ranges also stay clear of 0, the default id a real arm's graph uses.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from pathlib import Path

LOCK_DIR = Path(tempfile.gettempdir()) / "naf_ros_test_domains"
# Range of domain ids the tests may use: "lo-hi" inclusive (keep within 0-101, see above).
DOMAIN_RANGE_ENV = "NAF_ROS_TEST_DOMAINS"
TEST_DOMAINS = (50, 99)
BENCH_DOMAINS = (40, 48)


class DomainLease:
    """An exclusively held ROS domain id; ``release()`` (or process exit) frees it."""

    def __init__(self, domain_id: int, fd: int) -> None:
        self.domain_id = domain_id
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> int:
        return self.domain_id

    def __exit__(self, *exc: object) -> None:
        self.release()


def parse_range(text: str) -> tuple[int, int]:
    """``"lo-hi"`` (inclusive) as a pair of ints."""
    lo, hi = (int(v) for v in text.split("-"))
    return lo, hi


def default_range() -> tuple[int, int]:
    """The tests' range: ``$NAF_ROS_TEST_DOMAINS`` if set, else :data:`TEST_DOMAINS`."""
    text = os.environ.get(DOMAIN_RANGE_ENV)
    return parse_range(text) if text else TEST_DOMAINS


def allocate_domain(
    domains: tuple[int, int] | str | None = None, *, spread: bool = True
) -> DomainLease:
    """Claim a free domain id in ``domains`` (a pair or ``"lo-hi"``; default the tests').

    ``spread`` starts the search at a pid- and time-dependent offset so parallel test
    processes rarely contend for the same lock; without it the lowest free id is taken
    (benchmarks, which run one graph at a time).
    """
    if domains is None:
        lo, hi = default_range()
    elif isinstance(domains, str):
        lo, hi = parse_range(domains)
    else:
        lo, hi = domains
    n = hi - lo + 1
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    start = (os.getpid() * 7919 + int(time.monotonic_ns() // 1000)) % n if spread else 0
    for i in range(n):
        did = lo + (start + i) % n
        fd = os.open(LOCK_DIR / f"{did}.lock", os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return DomainLease(did, fd)
    raise RuntimeError(f"no free ROS domain id in {lo}-{hi}")
