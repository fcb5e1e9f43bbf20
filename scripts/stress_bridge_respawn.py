#!/usr/bin/env python3
"""Stress the sim_bridge respawn: SIGKILL the bridge over and over, time each recovery.

Why: ``test/test_fault_injection.py`` kills the bridge once per run, so a recovery that
stalls once in tens of kills shows up there as a rare flake. This tool starts the same
lockstep graph the same way (``naf-ros launch --respawn`` with the test's settings, but
unlimited restarts and episodes), then loops: wait until transitions flow, SIGKILL the
bridge at a random moment, and measure the time until ``3*T`` new transitions arrived
(what the test waits for). Every recovery time is recorded; when one takes longer than
``--slow`` s, the policy's and the bridge's log tails and SIGUSR1 stack dumps are captured
*while* it is stuck and written into the output folder.

Usage (from the repository root, environment from ``scripts/setup_env.sh``)::

    python scripts/stress_bridge_respawn.py --kills 60 --out /tmp/stress

Prints one line per kill and a summary (count, median, max, number slower than ``--slow``);
``<out>/times.json`` holds the times, ``<out>/slow_<k>.txt`` the captures.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test"))

import test_fault_injection as tfi  # noqa: E402  (test/ on the path first)
from std_srvs.srv import Trigger  # noqa: E402
from support.faults import node_pid  # noqa: E402
from support.ros import allocate_domain, wait_until  # noqa: E402

from naf_ros.ros.names import RESET_SERVICE  # noqa: E402

BRIDGE, POLICY = "sim_bridge", "naf_policy"


def graph_args() -> list[str]:
    """The test's graph, but it must outlive every kill: no restart or episode limit."""
    args = list(tfi.GRAPH)
    args[args.index("--max-restarts") + 1] = "100000"
    args[args.index("--episodes") + 1] = "1000000"
    return args


def drain(run: tfi.Run, sink: list[str]) -> threading.Thread:
    """Read the launcher's output as it comes: every restart prints a log tail, and a full
    pipe would block the launcher (and with it every respawn) after a dozen kills."""

    def pump() -> None:
        for line in run.proc.stdout:
            sink.append(line)

    thread = threading.Thread(target=pump, name="launcher-output", daemon=True)
    thread.start()
    return thread


def stop(run: tfi.Run, pump: threading.Thread) -> None:
    """Ctrl-C the launcher (it stops its nodes), wait, then kill; the pump reads to EOF."""
    if run.proc.poll() is None:
        run.proc.send_signal(signal.SIGINT)
    try:
        run.proc.wait(60)
    except subprocess.TimeoutExpired:
        run.proc.kill()
        run.proc.wait()
    pump.join(5)


def capture(run: tfi.Run, k: int, elapsed: float, out: Path) -> Path:
    """Log tails and stacks of the policy and the bridge, taken while the recovery stalls."""
    text = f"kill {k}: no {3 * tfi.T} new transitions {elapsed:.1f} s after the kill\n"
    text += run.hang_report(POLICY, BRIDGE)
    # The observer itself: is its spin thread alive, does anything still arrive, where are
    # its threads (a stall seen only by this process would otherwise look like the graph's).
    counts = {name: len(getattr(run, name)) for name in ("trans", "js", "cmds", "diag", "progress")}
    text += f"\nprobe spin thread alive: {run.probe._thread.is_alive()}; received {counts}"
    time.sleep(2.0)
    later = {name: len(getattr(run, name)) - n for name, n in counts.items()}
    text += f"\nreceived in the next 2 s: {later}\n--- stacks of this process ---\n"
    with tempfile.TemporaryFile("w+") as fh:
        faulthandler.dump_traceback(fh, all_threads=True)
        fh.seek(0)
        text += fh.read()
    # Does a fresh client in another participant get an answer? Tells a bridge that does
    # not serve from a policy whose requests do not reach it.
    t0 = time.monotonic()
    try:
        resp = run.probe.call(Trigger, RESET_SERVICE, Trigger.Request(), timeout=5.0)
        text += f"\nprobe's own sim/reset call: {resp.message} after {time.monotonic() - t0:.2f} s"
    except TimeoutError as exc:
        text += f"\nprobe's own sim/reset call: {exc} ({time.monotonic() - t0:.2f} s)"
    path = out / f"slow_{k}.txt"
    path.write_text(text)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=60, help="how many times to kill the bridge")
    ap.add_argument("--slow", type=float, default=15.0, help="s: a recovery slower is captured")
    ap.add_argument("--give-up", type=float, default=90.0, help="s: stop waiting for one")
    ap.add_argument("--out", type=Path, required=True, help="folder for times and captures")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    tfi.GRAPH = graph_args()  # Run reads the module's GRAPH
    lease = allocate_domain()
    run = tfi.Run(lease.domain_id, args.out / "run")
    launcher_out: list[str] = []
    pump = drain(run, launcher_out)
    times: list[float] = []
    want = 3 * tfi.T
    try:
        if not run.trans.wait_for(want, 120):
            print(run.hang_report(POLICY, BRIDGE))
            return 1
        for k in range(args.kills):
            # Transitions flow (from the bridge we are about to kill), then a random moment.
            n0 = len(run.trans)
            if not run.trans.wait_for(n0 + 1, args.give_up):
                print(f"kill {k}: no transitions before the kill\n{run.hang_report(POLICY)}")
                return 1
            time.sleep(rng.uniform(0.0, 1.0))
            pid = node_pid(run.proc.pid, BRIDGE)
            if pid is None:
                print(f"kill {k}: bridge not running\n{run.log_tail(BRIDGE)}")
                return 1
            n = len(run.trans)
            t_kill = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda pid=pid: node_pid(run.proc.pid, BRIDGE) not in (None, pid), 30)
            note = ""
            if not run.trans.wait_for(n + want, args.slow):
                note = f" (captured {capture(run, k, time.monotonic() - t_kill, args.out)})"
                if not run.trans.wait_for(n + want, args.give_up - args.slow):
                    print(f"kill {k}: no recovery within {args.give_up} s{note}", flush=True)
                    times.append(float("inf"))
                    break
            dt = time.monotonic() - t_kill
            times.append(dt)
            print(f"kill {k}: transitions again after {dt:.2f} s{note}", flush=True)
    finally:
        (args.out / "times.json").write_text(json.dumps(times))
        stop(run, pump)
        (args.out / "launcher.log").write_text("".join(launcher_out))
        run.probe.close()
        lease.release()
    if times:
        slow = sum(t > args.slow for t in times)
        print(
            f"summary: {len(times)} kills, median {statistics.median(times):.2f} s, "
            f"max {max(times):.2f} s, {slow} slower than {args.slow} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
