"""The episode worker: reset, T steps of state -> action -> command -> transition, evaluation.

Episodes run in a worker thread as plain sequential code while the executor thread only
fills in the latest inputs; that keeps the episode logic readable and the callbacks short.
In realtime mode each step's command is computed by the joint-state callback itself (the
reflex, :mod:`.reflex`), and the worker does the step's bookkeeping while the arm already
has its command. In lockstep mode the worker acts, and before each action waits for the
learner to have trained on its recent transitions (UTD parity with the in-process trainer).

Also here: which controller runs an episode (NAF policy, iLQG with probability
``model_based.ilqg_probability``, or iLQG only while ``safety.safe_exploration`` is active),
and how transition episode numbers continue after a restart.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from std_srvs.srv import Trigger

from naf_ros.core.catch_up import CatchUp
from naf_ros.core.safety import ESTOP, WATCHDOG
from naf_ros.ros.codec import CONTROLLER_ILQG, CONTROLLER_POLICY, encode_transition
from naf_ros.ros.names import TRANSITIONS_TOPIC
from naf_ros.ros.policy.reflex import JointSample
from naf_ros.ros.policy.state_file import PolicyState

# A sim/reset request not answered within this is sent again (see EpisodeWorker._call_reset).
# The bridge answers within milliseconds; a full second keeps a busy machine from sending
# duplicates (each would reset the arm once more) in the normal case.
RESET_RESEND_S = 1.0


class Stopped(Exception):
    """The worker was asked to stop (deactivation or shutdown)."""


class EpisodeWorker:
    """Mixin of :class:`~naf_ros.ros.policy.node.NafPolicy`: the episode thread.

    Uses from the node: ``params``, ``cfg``, ``task``, ``command`` (action -> command),
    ``actor``, ``noise``, ``rng``,
    ``envelope``, ``producer``, ``diag``, ``_cond``, the reflex path's
    ``_next_state``/``_next_reflex``, the objects ``transitions``, ``homing`` and
    ``state_file``, and the outputs ``_publish_effort``, ``_send_zero``, ``_publish_metric``.
    """

    def _init_worker(self) -> None:
        self._worker: threading.Thread | None = None
        self._stopping = threading.Event()
        self._learner_wait_s = 0.0
        self._catch_up_wait_s = 0.0
        self._catch_up_timeouts = 0
        self._episode_offset = 0
        self._safe_passed = False
        self._safe_controller = None
        self.episode = 0
        self.env_steps = 0
        self.done = False

    def _start_worker(self) -> None:
        self._stopping.clear()
        self._worker = threading.Thread(target=self._run, name="episodes", daemon=True)
        self._worker.start()

    def _stop_worker(self) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=10.0)
        self._worker = None

    def _wait_while_estopped(self) -> None:
        """Start nothing while the e-stop is latched (raises Stopped on shutdown)."""
        while self.envelope.estopped:
            self._wait(lambda: not self.envelope.estopped, 1.0)

    def _wait(self, pred, timeout: float) -> bool:
        """Wait on the shared condition until ``pred()``; raises Stopped on shutdown."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred():
                if self._stopping.is_set():
                    raise Stopped
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        if self._stopping.is_set():
            raise Stopped
        return True

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _wait_for_learner(self) -> None:
        """Lockstep UTD parity: act only once the learner has trained on our last transition."""
        p, producer = self.params, self.producer
        if p.mode != "lockstep" or p.wait_for_learner <= 0 or producer.seq == 0:
            return
        need = producer.seq - 1 - p.max_learner_lag
        if need < 0 or producer.stale:
            return
        t0 = time.perf_counter()
        # A learner that is catching up (a backlog after its restart) keeps being waited
        # for; one that acknowledged nothing new for wait_for_learner s is not.
        while not self._wait(lambda: producer.acked >= need, p.wait_for_learner):
            if time.monotonic() - producer.last_ack_change < p.wait_for_learner:
                continue
            with self.transitions.lock:
                producer.stale = True  # until the learner acknowledges something new
            self.diag.values["learner_wait_timeouts"] = (
                self.diag.values.get("learner_wait_timeouts", 0) + 1
            )
            self.get_logger().info(
                f"learner has not reached seq {need} within {p.wait_for_learner} s; "
                "acting without waiting until it reports progress again",
                throttle_duration_sec=10.0,
            )
            break
        self._learner_wait_s += time.perf_counter() - t0

    def _wait_for_catch_up(self) -> None:
        """Realtime ``catch_up_ratio``: hold a training episode's start (the arm rests as
        between episodes) until the learner has caught up, at most ``catch_up_timeout`` s
        (:mod:`naf_ros.core.catch_up`)."""
        p = self.params
        if p.mode != "realtime" or p.catch_up_ratio <= 0:
            return
        rule = CatchUp(p.catch_up_ratio, p.catch_up_timeout)
        t0 = time.monotonic()

        def caught_up() -> bool:
            achieved, target, seen = self.transitions.learner_ratio
            return rule.caught_up(achieved, target, unseen=self.producer.seq - 1 - seen)

        caught = self._wait(caught_up, rule.max_wait_s)
        self._catch_up_wait_s += time.monotonic() - t0
        if caught:
            return
        self._catch_up_timeouts += 1
        self._publish_metric("catch_up_timeouts", self._catch_up_timeouts)
        achieved, target = (
            "?" if v is None else f"{v:.2f}" for v in self.transitions.learner_ratio[:2]
        )
        self.get_logger().warning(
            f"learner has not caught up within catch_up_timeout {rule.max_wait_s} s "
            f"({achieved} updates per transition of {rule.ratio} x {target} wanted); "
            f"starting the episode anyway [{self._catch_up_timeouts} so far]"
        )

    def _wait_for_consumers(self) -> None:
        """Hold the first episode until the learner (and co.) can receive transitions."""
        if self.params.startup_timeout <= 0 or not self.params.startup_subscribers:
            return
        wanted = set(self.params.startup_subscribers)

        def ready() -> bool:
            infos = self.get_subscriptions_info_by_topic(TRANSITIONS_TOPIC)
            present = {i.node_name for i in infos}
            return wanted <= present and self.transitions.pub.get_subscription_count() >= len(infos)

        t0 = time.monotonic()
        while not ready():
            if self._stopping.is_set():
                raise Stopped
            if time.monotonic() - t0 > self.params.startup_timeout:
                self.get_logger().warning(
                    f"no {sorted(wanted)} subscribed to {TRANSITIONS_TOPIC} within "
                    f"{self.params.startup_timeout} s; starting without"
                )
                return
            time.sleep(0.05)
        self.get_logger().info(f"transition consumers ready after {time.monotonic() - t0:.1f} s")

    def _start_numbering(self) -> None:
        """Our transitions' episode numbers must be newer than any the learner has from us.

        With ``persist`` the saved count already is; otherwise (or if the run folder is
        unwritable) the learner's latched progress says where a previous run of this arm
        got to, and episode numbers on the wire continue after it.
        """
        if self.params.persist:  # give the learner's latched progress a moment to arrive
            self._wait(lambda: self.producer.last_progress > 0, 2.0)
        hint = self.producer.episode_hint
        if hint is not None and hint >= self.episode:
            self._episode_offset = hint + 1 - self.episode
            self.get_logger().info(
                f"learner has episodes up to {hint} from arm {self.params.arm_index}; numbering "
                f"transitions from episode {hint + 1}"
            )

    def _run(self) -> None:
        cfg = self.cfg.train
        self._learner_wait_s = 0.0
        try:
            self._wait_for_consumers()
            self._start_numbering()
            while self.episode < cfg.episodes:
                if cfg.max_steps and self.env_steps >= cfg.max_steps:
                    break
                stats = self._episode(train=True)
                if stats is None:
                    continue
                ep = self.episode
                self._publish_metric("tip_distance", stats[1])
                self._publish_metric("episode_return", stats[0])
                self.get_logger().info(
                    f"episode {ep}: return {stats[0]:.2f}, tip {stats[1]:.3f} m, "
                    f"{stats[2]}, {self.env_steps} steps"
                )
                if ep % cfg.eval_every == 0 or ep == cfg.episodes:
                    evals = [self._episode(train=False) for _ in range(cfg.eval_episodes)]
                    evals = [e for e in evals if e is not None]
                    if evals:
                        ret, tip = np.mean([e[0] for e in evals]), np.mean([e[1] for e in evals])
                        self._publish_metric("eval_tip_distance", tip)
                        self._publish_metric("eval_return", ret)
                        self.get_logger().info(
                            f"eval after episode {ep}: return {ret:.2f}, tip {tip:.3f} m "
                            f"({len(evals)} episodes)"
                        )
                        self._check_safe_exploration(float(ret))
            self.done = True
            self._send_zero()
            self.get_logger().info(
                f"done: {self.episode} episodes, {self.env_steps} steps, "
                f"{self.producer.seq} transitions, weights version {self._weights_version}"
            )
            if self.params.exit_when_done and self.stop_event is not None:
                self.stop_event.set()
        except Stopped:
            pass
        except Exception as exc:  # noqa: BLE001 - a dead worker must not leave effort applied
            self.get_logger().fatal(f"episode worker failed: {type(exc).__name__}: {exc}")
            self._send_zero()
            self.exit_code = 1
            if self.stop_event is not None:
                self.stop_event.set()

    def _save_state(self) -> None:
        """With ``persist``: the counters a restart continues from (see :mod:`.state_file`)."""
        if self.state_file is not None:
            self.state_file.save(PolicyState(self.episode, self.env_steps, self._safe_passed))

    @property
    def safe_exploration_active(self) -> bool:
        return self.cfg.safety.safe_exploration and not self._safe_passed

    def _check_safe_exploration(self, eval_return: float) -> None:
        if not self.safe_exploration_active:
            return
        target = self.cfg.safety.safe_exploration_return
        if eval_return >= target:
            self._safe_passed = True
            self.get_logger().info(
                f"safe exploration done: evaluation return {eval_return:.2f} >= {target}; "
                "the policy explores from now on"
            )
            self._save_state()
        self.diag.values["safe_exploration"] = (
            "active" if self.safe_exploration_active else "passed"
        )

    def _choose_controller(self, train: bool):
        """The iLQG controller for this episode, or None for the NAF policy."""
        if not train:
            return None
        with self._cond:
            ilqg = self._ilqg
        if self.safe_exploration_active:
            if ilqg is not None:
                return ilqg
            if self._safe_controller is None:  # before the first iLQG step: N(0, var I)
                from naf_ros.core.lin_gauss_policy import LinearGaussianController

                self._safe_controller = LinearGaussianController.initial(
                    self.T,
                    self.task.obs_dim,
                    self.task.act_dim,
                    self.params.safe_initial_action_var,
                )
            return self._safe_controller
        p = self.cfg.model_based.ilqg_probability
        if ilqg is not None and p > 0 and self.rng.random() < p:
            return ilqg
        return None

    def _begin_episode(self) -> tuple[JointSample, np.ndarray] | None:
        """Bring the arm to an initial state; returns (state, target) or None on failure."""
        if self.params.reset_mode == "homing":
            state = self.homing.home()
            return None if state is None else (state, self.default_target)
        if not self.reset_client.wait_for_service(timeout_sec=0.0):
            if not self._wait(self.reset_client.service_is_ready, self.params.reset_timeout):
                self.get_logger().warning("sim/reset is not available", throttle_duration_sec=5.0)
                return None
        with self._cond:
            before = self._js_count  # the reset's state is one received after this
        resp = self._call_reset()
        if resp is None:
            self.get_logger().warning("sim/reset did not answer", throttle_duration_sec=5.0)
            return None
        if not resp.success:
            self.get_logger().warning(
                f"sim/reset failed: {resp.message}", throttle_duration_sec=5.0
            )
            return None
        stamp = 0
        if resp.message.startswith("stamp_ns="):
            try:
                stamp = int(resp.message.split("=", 1)[1])
            except ValueError:
                stamp = 0
        state = self._next_state(None, min_ns=stamp, after_index=before)
        if state is None:
            return None
        # The bridge stamps the target of a reset with the reset's time: wait for that one.
        if not self._wait(lambda: self._target is not None and self._target_ns >= stamp, 1.0):
            if self._target is None:
                return state, self.default_target
        return state, self._target.copy()

    def _call_reset(self) -> Trigger.Response | None:
        """sim/reset, re-sent every ``RESET_RESEND_S``; the newest request's answer, or None
        if none came within ``reset_timeout``.

        Why re-send: after the bridge is restarted (SIGKILL, respawn) a request can be lost
        without any error, in two ways, both seen in ``scripts/stress_bridge_respawn.py``
        runs (about one respawn in three): (1) it is written while our request writer does
        not match the new bridge's reader yet (a SIGKILLed participant stays in discovery
        until its lease expires, so the service even looks ready; matching the new one took
        up to 9 s on a loaded machine), and the service is volatile, so the new bridge
        never gets it; (2) the new bridge takes it before its response writer has matched
        our response reader, and Fast DDS drops the answer ("failed to send response
        (timeout): client will not receive response", a RuntimeWarning in the bridge's
        log). Sending one request per ``reset_timeout`` turned such a discovery delay into
        whole multiples of ``reset_timeout`` (issue #15); re-sending gets the answer about
        as soon as the two are matched.

        Why only the newest answer counts: requests from one client reach the bridge in
        order and it serves them one after another, so when the newest is answered every
        earlier one that arrived was served before it; the state the episode then starts
        from (stamped at or after the newest answer) is the last reset's. An earlier
        answer arriving late could otherwise start the episode from a state a later reset
        replaced.
        """
        deadline = time.monotonic() + self.params.reset_timeout
        while True:
            future = self.reset_client.call_async(Trigger.Request())
            done = threading.Event()
            future.add_done_callback(lambda _f, done=done: (done.set(), self._notify()))
            left = deadline - time.monotonic()
            if self._wait(done.is_set, min(RESET_RESEND_S, max(left, 0.0))):
                return future.result() if future.exception() is None else None
            self.reset_client.remove_pending_request(future)  # a late answer is ignored
            if time.monotonic() >= deadline:
                return None

    def _abort(self, why: str) -> None:
        key = f"aborted_episodes/{why}"
        self.diag.values[key] = self.diag.values.get(key, 0) + 1
        self.diag.values["aborted_episodes"] = self.diag.values.get("aborted_episodes", 0) + 1
        if self.params.mode == "realtime":
            self._send_zero()  # do not leave a torque applied

    def _episode(self, train: bool) -> tuple[float, float, str] | None:
        """One episode; returns (return, final tip distance, controller) or None if aborted."""
        self._wait_while_estopped()
        if train:
            self._wait_for_catch_up()
        begun = self._begin_episode()
        if begun is None:
            time.sleep(0.1)
            self._wait(lambda: False, 0.0)  # raises Stopped when stopping
            return None
        state, target = begun
        controller = self._choose_controller(train)
        self.noise.reset()
        episode = self.episode + self._episode_offset
        if train:
            self.episode += 1
            self._save_state()  # before any transition: a restart continues after this one
        obs = self.task.observation(state.q, state.qd, target)
        total = 0.0
        self._wait_for_learner()  # evaluation too: it must see the trained-on weights
        if self.params.mode == "realtime":
            # The reset's state has aged through the bookkeeping above; like every later
            # step, the first one acts inside the callback of a fresh state.
            with self._cond:
                newest = self._latest if self._latest is not None else state
            first = self._next_reflex(newest, target, controller, 0, train, act=True)
            if first is None:
                self._abort("no_state")
                return None
            state, obs, action, reasons = first
        else:
            action, reasons = self._act_and_command(state, obs, controller, 0, train)
        for t in range(self.T):
            if ESTOP in reasons or WATCHDOG in reasons:
                self._abort("estop" if ESTOP in reasons else "watchdog")
                return None
            last = t == self.T - 1
            if self.params.mode == "realtime":  # the callback acts on the next state itself
                step = self._next_reflex(state, target, controller, t + 1, train, act=not last)
                if step is None:
                    self._abort("no_state")
                    return None
                nxt, next_obs, next_action, next_reasons = step
            else:
                nxt = self._next_state(state)
                if nxt is None:
                    self._abort("no_state")
                    return None
                next_obs = self.task.observation(nxt.q, nxt.qd, target)
            if self.envelope.estopped:  # engaged during the step: this one is not clean
                self._abort("estop")
                return None
            reward = float(self.task.reward(obs, action))
            if train:
                self.transitions.publish(
                    encode_transition(
                        producer=self.params.arm_index,
                        seq=self.producer.seq,
                        episode=episode,
                        t=t,
                        obs=obs,
                        action=action,
                        reward=reward,
                        next_obs=next_obs,
                        terminal=False,
                        truncated=last,
                        controller=CONTROLLER_ILQG if controller is not None else CONTROLLER_POLICY,
                    ),
                    episode,
                )
                self.env_steps += 1
            total += reward
            if not last and self.params.mode != "realtime":
                self._wait_for_learner()
                next_action, next_reasons = self._act_and_command(
                    nxt, next_obs, controller, t + 1, train
                )
            obs, state = next_obs, nxt
            if not last:
                action, reasons = next_action, next_reasons
        if self.params.mode == "realtime":
            self._send_zero()  # between episodes a real arm must not keep the last torque
        self._update_diag_values()
        tip = float(self.task.tip_distance(obs))
        return total, tip, "ilqg" if controller is not None else "policy"

    def _act_and_command(
        self, state: JointSample, obs: np.ndarray, controller, t: int, train: bool
    ) -> tuple[np.ndarray, tuple[str, ...]]:
        """Policy (or iLQG) action through the envelope onto the wire.

        Returns the action to learn from (what the arm actually got when limited) and the
        envelope's reasons.
        """
        if controller is not None:
            action = controller.act(t, obs, self.rng)
        else:
            action = self.actor.act(obs, self.noise if train else None)
        action = np.clip(np.nan_to_num(action, nan=0.0), -1.0, 1.0)
        sent, reasons = self._publish_effort(self.command.command(action, state.q), state)
        if reasons and not (ESTOP in reasons or WATCHDOG in reasons):
            action = self.command.action(sent, state.q)
        return action, reasons
