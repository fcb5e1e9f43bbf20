"""Graph benchmark part ``latency``: joint state -> effort command in realtime mode.

Seen by an independent subscriber (publisher stamps, DDS reception stamps, missed control
periods) while the learner updates, next to the policy's in-node figure from /diagnostics,
the same bridge answered by a minimal in-callback responder (what rclpy + Fast DDS cost on
this machine) and the scheduler's own wake-up lateness at the same priority.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from naf_ros.bench.graph.harness import (
    Probe,
    base_launch_args,
    diag_value,
    graph_session,
    probe_qos,
    progress_value,
    set_text,
    shared_config,
)
from naf_ros.bringup.domains import allocate_domain
from naf_ros.bringup.proc_group import ros_child_env, spawn_group, stop_group
from naf_ros.ros.names import DIAGNOSTICS_TOPIC, PROGRESS_TOPIC


def _pair_latencies(
    js: list[int], cmd: list[int], nonzero: list[bool], period_ns: int
) -> tuple[np.ndarray, dict]:
    """Per command: age of the newest joint state when it went out (first command per state).

    The policy always acts on the newest state it has, so this is its reaction time, except
    when a newer state arrives while it is still computing: then the figure is a lower bound.
    Such lagging shows up instead as *missed periods*, control periods inside an episode
    (commands within two periods on both sides, no end-of-episode zero within two periods
    before) that got no command at all. Zero-effort commands are the policy's end-of-episode
    safety zeros, not reactions; ``cmd`` entries of 0 are excluded samples.
    """
    js = sorted(js)
    lat, used = [], set()
    for t, nz in zip(cmd, nonzero):
        if not nz or not t:
            continue
        i = bisect.bisect_right(js, t) - 1
        if i < 0 or i in used:
            continue
        used.add(i)
        lat.append((t - js[i]) / 1e6)
    times = sorted(t for t, nz in zip(cmd, nonzero) if nz and t)
    # A zero-effort command ends an episode; the periods until the next one starts (reset,
    # first fresh state) are not control periods of an episode.
    zeros = sorted(t for t, nz in zip(cmd, nonzero) if not nz and t)
    missed = periods = 0
    if times:
        for a, b in zip(js, js[1:]):
            if not (times[0] <= a and b <= times[-1]):
                continue
            if bisect.bisect_right(zeros, b) - bisect.bisect_left(zeros, a - 2 * period_ns):
                continue
            before = bisect.bisect_left(times, a) - bisect.bisect_left(times, a - 2 * period_ns)
            after = bisect.bisect_left(times, b + 2 * period_ns) - bisect.bisect_left(times, b)
            if before and after:
                periods += 1
                inside = bisect.bisect_left(times, b) - bisect.bisect_left(times, a)
                missed += inside == 0
    arr = np.asarray(lat)
    info = {
        "over_one_period": int(np.sum(arr > period_ns / 1e6)),
        "missed_periods": missed,
        "in_episode_periods": periods,
    }
    return arr, info


def _stats(ms: np.ndarray) -> dict:
    if not len(ms):
        return {"samples": 0}
    return {
        "samples": int(len(ms)),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p90_ms": round(float(np.percentile(ms, 90)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "max_ms": round(float(ms.max()), 3),
        "mean_ms": round(float(ms.mean()), 3),
    }


def part_latency(args: argparse.Namespace, store: dict) -> dict:
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    cfg = shared_config(args, {})
    control_dt = 0.02
    with contextlib.suppress(Exception):
        from naf_ros.envs.configured import reacher_env_kwargs

        control_dt = float(reacher_env_kwargs(cfg).get("control_dt", control_dt))
    period_ns = int(control_dt * 1e9)
    launch_args = base_launch_args(args) + [
        "--mode",
        "realtime",
        "--episodes",
        "100000",
        "--set",
        set_text("learner.checkpoint_every_s", 0.0),
    ]
    for node in ("naf_policy", "sim_bridge"):  # the state -> command path, at SCHED_FIFO
        launch_args += ["--set", set_text(f"{node}.realtime_priority", args.realtime_priority)]
    deep, sensor = probe_qos()
    run_dir = args.out / "graph_runs" / f"latency-{time.strftime('%H%M%S')}"
    with graph_session(args, run_dir, launch_args) as (run, probe):
        js = probe.record(JointState, "/joint_states", sensor, lambda m: None)
        cmd = probe.record(
            Float64MultiArray,
            "/effort_controller/commands",
            deep,
            lambda m: bool(np.any(np.asarray(m.data) != 0.0)),
        )
        progress = probe.record(Float64MultiArray, PROGRESS_TOPIC, deep, progress_value)
        diag = probe.record(DiagnosticArray, DIAGNOSTICS_TOPIC, deep, diag_value)
        time.sleep(0.5)
        run.start()
        learning_from: int | None = None
        deadline = time.monotonic() + args.run_timeout
        cpu_a = cpu_b = None
        t_cpu = 0.0
        while time.monotonic() < deadline and run.alive():
            last = progress.last()
            # Without a learner (--graph-skip learner) the whole run counts, after 2 s.
            no_learner = "learner" in args.graph_skip and time.monotonic() - run.started > 2.0
            if learning_from is None and (no_learner or (last and last[1] > 0)):
                learning_from = time.time_ns()
                cpu_a, t_cpu = run.cpu_seconds(), time.monotonic()
            if learning_from is not None:
                with cmd.lock:
                    n = sum(1 for t in cmd.received_ns if t > learning_from)
                if n >= args.latency_samples * 1.05 + 10:
                    cpu_b, t_cpu = run.cpu_seconds(), time.monotonic() - t_cpu
                    break
            time.sleep(0.1)
        time.sleep(1.5)  # one more /diagnostics period with the in-node figures
        if not run.alive():
            raise RuntimeError(f"realtime graph stopped early\n{run.tail()}")
        cpu = {}
        if cpu_a and cpu_b:
            cpu = {k: round((cpu_b[k] - cpu_a[k]) / t_cpu, 3) for k in cpu_b if k in cpu_a}
        with js.lock, cmd.lock:
            snap = {
                "js_rx": list(js.received_ns),
                "js_src": list(js.source_ns),
                "cmd_rx": list(cmd.received_ns),
                "cmd_src": list(cmd.source_ns),
                "nz": list(cmd.values),
            }
        node_diag = {}
        for values in reversed(diag.values):
            hits = [v for name, v in values.items() if name.endswith("naf_policy")]
            if hits and "state_to_command_ms_p99" in hits[0]:
                node_diag = hits[0]
                break
        command = shlex.join(run.cmd)
    if learning_from is None:
        raise RuntimeError("the learner never started updating in realtime mode")
    out: dict[str, Any] = {"control_period_ms": control_dt * 1e3, "command": command}
    for phase, keep in (
        ("before_learning", lambda t: t < learning_from),
        ("learning", lambda t: t >= learning_from),
    ):
        res = {}
        for label, jk, ck in (
            ("publisher_stamps", "js_src", "cmd_src"),
            ("dds_reception", "js_rx", "cmd_rx"),
        ):
            cmd_t = [t if keep(r) else 0 for t, r in zip(snap[ck], snap["cmd_rx"])]
            lat, info = _pair_latencies(snap[jk], cmd_t, snap["nz"], period_ns)
            res[label] = {**_stats(lat), **info}
            if phase == "learning" and label == "publisher_stamps":
                store["latency_ms"] = lat.tolist()
        out[phase] = res
    out["joint_states_received"] = len(snap["js_rx"])
    # The node's own figure: its last <= 2000 steps, start-up and pre-learning included.
    out["in_node"] = {
        k: node_diag.get(k)
        for k in (
            "state_to_command_ms_p50",
            "state_to_command_ms_p99",
            "state_to_command_cpu_ms_p50",
            "state_to_command_cpu_ms_p99",
            "state_transit_ms_p50",
            "state_transit_ms_p99",
            "state_dispatch_ms_p50",
            "state_dispatch_ms_p99",
            "episodes",
            "env_steps",
        )
    }
    out["cpu_cores_per_node_while_learning"] = cpu
    out["p99_target_ms"] = 2.0
    if args.latency_reference:
        out["reference_echo"] = latency_reference(args, min(args.latency_samples, 1000), period_ns)
        store["reference_ms"] = out["reference_echo"].pop("_samples_ms", [])
        out["scheduler_wakeup"] = scheduler_wakeup(args.realtime_priority)
    pub = out["learning"]["publisher_stamps"]
    rx = out["learning"]["dds_reception"]
    print(
        f"  external, publisher stamps (bridge write -> policy write) while learning: "
        f"p50 {pub.get('p50_ms')} / p99 {pub.get('p99_ms')} ms over {pub.get('samples')} "
        f"samples, {pub.get('missed_periods')}/{pub.get('in_episode_periods')} control periods "
        f"missed; DDS reception at the probe p50 {rx.get('p50_ms')} / p99 {rx.get('p99_ms')} "
        f"ms; in-node p50 {out['in_node']['state_to_command_ms_p50']} / p99 "
        f"{out['in_node']['state_to_command_ms_p99']} ms (of it CPU in the callback p50 "
        f"{out['in_node']['state_to_command_cpu_ms_p50']} / p99 "
        f"{out['in_node']['state_to_command_cpu_ms_p99']} ms); before the callback: DDS "
        f"transit p50 {out['in_node']['state_transit_ms_p50']} / p99 "
        f"{out['in_node']['state_transit_ms_p99']} ms, dispatch p50 "
        f"{out['in_node']['state_dispatch_ms_p50']} / p99 "
        f"{out['in_node']['state_dispatch_ms_p99']} ms; cores {cpu}",
        flush=True,
    )
    pre = out["before_learning"]["publisher_stamps"]
    print(f"  (before the learner warmed up: p50 {pre.get('p50_ms')} / p99 {pre.get('p99_ms')} ms)")
    if "reference_echo" in out:
        ref = out["reference_echo"]["publisher_stamps"]
        print(
            f"  reference (bridge + in-callback echo, publisher stamps): p50 {ref.get('p50_ms')} "
            f"/ p99 {ref.get('p99_ms')} ms over {ref.get('samples')} samples",
            flush=True,
        )
        wake = out["scheduler_wakeup"]
        print(
            f"  scheduler floor (1 ms sleeps at the same priority, no ROS): lateness p50 "
            f"{wake.get('p50_ms')} / p99 {wake.get('p99_ms')} / p99.9 {wake.get('p999_ms')} ms",
            flush=True,
        )
    return out


WAKEUP_PERIOD_S = 0.001
WAKEUP_SAMPLES = 10_000


def wakeup_jitter(priority: int) -> int:
    """How late a thread wakes from a 1 ms sleep: the OS part of any callback's latency.

    Every message hop needs at least one such wake-up (DDS receive thread, executor), so its
    tail bounds what a node can achieve on this machine at this priority."""
    if priority > 0:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    late = np.empty(WAKEUP_SAMPLES)
    for i in range(WAKEUP_SAMPLES):
        t0 = time.perf_counter()
        time.sleep(WAKEUP_PERIOD_S)
        late[i] = time.perf_counter() - t0 - WAKEUP_PERIOD_S
    late *= 1e3
    print(
        json.dumps(
            {
                "priority": priority,
                "policy": "fifo" if os.sched_getscheduler(0) == os.SCHED_FIFO else "normal",
                "samples": WAKEUP_SAMPLES,
                "p50_ms": round(float(np.percentile(late, 50)), 3),
                "p99_ms": round(float(np.percentile(late, 99)), 3),
                "p999_ms": round(float(np.percentile(late, 99.9)), 3),
                "max_ms": round(float(late.max()), 3),
                "over_2ms_fraction": round(float((late > 2.0).mean()), 5),
            }
        )
    )
    return 0


def scheduler_wakeup(priority: int) -> dict:
    """:func:`wakeup_jitter` in a child process (so only it runs at that priority)."""
    cmd = [sys.executable, "-m", "naf_ros.bench.graph", "--wakeup-jitter", str(priority)]
    try:
        done = subprocess.run(
            cmd, env=ros_child_env(None), capture_output=True, text=True, timeout=120
        )
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def echo_responder(priority: int = 0) -> int:
    """Reference responder: answer each joint state from inside its callback.

    One thread, no torch, no episode logic: what rclpy + Fast DDS on this machine cost for
    the state -> command round trip, the floor under the policy node's figure. It runs at
    the policy's SCHED_FIFO ``priority`` (all threads, DDS ones too) so the floor is
    measured on equal terms.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from naf_ros.ros import qos

    rclpy.init()
    node = rclpy.create_node("naf_bench_echo")
    if priority > 0:
        from naf_ros.ros.realtime import raise_priority

        raise_priority(node, priority)
    pub = node.create_publisher(Float64MultiArray, "/effort_controller/commands", qos.COMMANDS)
    reply = Float64MultiArray(data=[0.01, -0.01, 0.01])
    node.create_subscription(
        JointState, "/joint_states", lambda _m: pub.publish(reply), qos.JOINT_STATES_SUB
    )
    with contextlib.suppress(KeyboardInterrupt, ExternalShutdownException):
        rclpy.spin(node)
    return 0


def _spawn(cmd: list[str], domain_id: int, log_path: Path) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return spawn_group(cmd, ros_child_env(domain_id), log)


def latency_reference(args: argparse.Namespace, samples: int, period_ns: int) -> dict:
    """The realtime bridge answered by :func:`echo_responder` instead of the policy."""
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    deep, sensor = probe_qos()
    run_dir = args.out / "graph_runs" / f"latency-reference-{time.strftime('%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    lease = allocate_domain(args.domains, spread=False)
    probe = None
    procs: list[subprocess.Popen] = []
    try:
        probe = Probe(lease.domain_id)
        js = probe.record(JointState, "/joint_states", sensor, lambda m: None)
        cmd = probe.record(Float64MultiArray, "/effort_controller/commands", deep, lambda m: True)
        time.sleep(0.5)
        bridge = [sys.executable, "-m", "naf_ros.ros.sim_bridge", "--ros-args"]
        bridge += ["-p", "mode:=realtime", "-p", "command_timeout:=5.0"]
        bridge += ["-p", f"realtime_priority:={args.realtime_priority}"]
        echo = [sys.executable, "-m", "naf_ros.bench.graph", "--echo-responder"]
        echo += ["--realtime-priority", str(args.realtime_priority)]
        procs.append(_spawn(bridge, lease.domain_id, run_dir / "sim_bridge.log"))
        procs.append(_spawn(echo, lease.domain_id, run_dir / "echo.log"))
        deadline = time.monotonic() + min(args.run_timeout, 300.0)
        while len(cmd) < samples + 100 and time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"reference bridge/echo exited; logs in {run_dir}")
            time.sleep(0.1)
        with js.lock, cmd.lock:
            snap = {
                k: list(getattr(s, f))
                for k, s, f in (
                    ("js_src", js, "source_ns"),
                    ("js_rx", js, "received_ns"),
                    ("cmd_src", cmd, "source_ns"),
                    ("cmd_rx", cmd, "received_ns"),
                )
            }
    finally:
        for proc in procs:
            stop_group(proc, 15.0)
        if probe is not None:
            probe.close()
        lease.release()
    out: dict[str, Any] = {
        "responder": "in-callback echo (naf_ros.bench.graph --echo-responder)",
        "realtime_priority": args.realtime_priority,
    }
    for label, jk, ck in (
        ("publisher_stamps", "js_src", "cmd_src"),
        ("dds_reception", "js_rx", "cmd_rx"),
    ):
        cmd_t = snap[ck][100:]  # skip discovery/start-up
        lat, info = _pair_latencies(snap[jk], cmd_t, [True] * len(cmd_t), period_ns)
        out[label] = {**_stats(lat), **info}
        if label == "publisher_stamps":
            out["_samples_ms"] = lat.tolist()
    return out
