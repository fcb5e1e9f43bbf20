"""The fast NAF update (flat parameters, FlatAdam, hand-derived backward) against the update
it replaced: autograd, ``torch.optim.Adam(foreach=True)``, ``clip_grad_norm_`` and a
per-parameter soft update, kept here as the reference. Both start from the same weights and
see the same batches; losses and weights must agree to float32 tolerance after many steps.
Also: torch's checkpoint layout both ways, the NaN skip, ``agent.device``.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from naf_ros.config import AgentConfig, ConfigError, config_from_dict
from naf_ros.core.naf import NAFAgent, resolve_device, td_target
from naf_ros.core.naf_fast import FastNAFUpdate, value_trunk
from naf_ros.core.replay import ReplayBuffer

OBS, ACT = 7, 3


class ReferenceAgent:
    """The update as it was before the fast path (autograd end to end)."""

    def __init__(self, agent: NAFAgent) -> None:
        self.cfg = agent.cfg
        self.net = copy.deepcopy(agent.net)
        self.target = copy.deepcopy(agent.target)
        self.params = list(self.net.parameters())
        self.target_params = list(self.target.parameters())
        self.optimizer = torch.optim.Adam(self.params, lr=self.cfg.lr, foreach=True)

    def update(self, batch: dict) -> float:
        t = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in batch.items()}
        with torch.no_grad():
            y = td_target(
                t["reward"], self.target.value(t["next_obs"]), t["terminal"], self.cfg.gamma
            )
        self.net.train()
        loss = torch.mean((y - self.net(t["obs"], t["action"])) ** 2)
        if not torch.isfinite(loss):
            return float("nan")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip is not None else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm, foreach=True)
        if not torch.isfinite(norm):
            self.optimizer.zero_grad(set_to_none=True)
            return float("nan")
        self.optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(self.target_params, self.params, self.cfg.tau)
            for b_t, b in zip(self.target.buffers(), self.net.buffers()):
                if b_t.dtype.is_floating_point:
                    b_t.mul_(1.0 - self.cfg.tau).add_(b, alpha=self.cfg.tau)
                else:
                    b_t.copy_(b)
        return float(loss.detach())


def filled_replay(seed: int = 0, n: int = 500) -> ReplayBuffer:
    rng = np.random.default_rng(seed)
    buf = ReplayBuffer(OBS, ACT, 1000)
    terminal = (rng.uniform(size=n) < 0.1).astype(float)
    buf.add_batch(
        rng.normal(size=(n, OBS)),
        rng.uniform(-1, 1, (n, ACT)),
        rng.normal(size=n),
        rng.normal(size=(n, OBS)),
        terminal,
    )
    return buf


def assert_state_close(got: dict, want: dict, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    assert list(got) == list(want)
    for k in want:
        np.testing.assert_allclose(
            got[k].detach().cpu().numpy(), want[k].detach().numpy(), rtol=rtol, atol=atol, err_msg=k
        )


CASES = {
    "paper (separate trunks)": dict(hidden=[32, 32]),
    "shared trunk": dict(hidden=[24, 16], shared_trunk=True),
    "one layer, grad clip": dict(hidden=[20], grad_clip=0.5, lr=3e-3),
    "three layers": dict(hidden=[16, 16, 16]),
    "batch norm (autograd path)": dict(hidden=[16, 16], batch_norm=True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fast_update_matches_the_reference_over_many_steps(case):
    cfg = AgentConfig(tau=0.05, **CASES[case])
    agent = NAFAgent(OBS, ACT, cfg, seed=3)
    assert agent.fused == (not cfg.batch_norm)
    ref = ReferenceAgent(agent)
    buf, rng = filled_replay(), np.random.default_rng(1)
    for i in range(40):
        batch = buf.sample(64, rng)
        want = ref.update(batch)
        got = agent.update(batch)
        assert got == pytest.approx(want, rel=1e-5, abs=1e-7), f"update {i}"
    assert agent.updates == 40
    assert_state_close(agent.net.state_dict(), ref.net.state_dict())
    assert_state_close(agent.target.state_dict(), ref.target.state_dict())
    got_opt, want_opt = agent.optimizer.state_dict(), ref.optimizer.state_dict()
    assert got_opt["param_groups"] == want_opt["param_groups"]
    for i, st in want_opt["state"].items():
        assert float(got_opt["state"][i]["step"]) == float(st["step"]) == 40.0
        assert_state_close(got_opt["state"][i], st, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("numpy", [True, False], ids=["numpy", "torch"])
def test_fast_update_on_reused_staged_batches_of_two_sizes_matches_the_reference(numpy):
    """The learner's loop: batches staged by sample_tensors(reuse=True), the batch size
    changing between updates (each size keeps its own buffers). Both backends of the
    quadratic form: numpy (the CPU default) and torch (what other devices run)."""
    agent = NAFAgent(OBS, ACT, AgentConfig(hidden=[24, 24], tau=0.05), seed=8)
    fast = FastNAFUpdate(
        agent.net, agent.target, agent.optimizer.grad_views, agent.cfg.gamma, numpy
    )
    agent._loss_and_grad = fast.loss_and_grad
    ref = ReferenceAgent(agent)
    buf, cpu = filled_replay(), torch.device("cpu")
    for i in range(30):
        size = 64 if i % 3 else 32
        want = ref.update(buf.sample(size, np.random.default_rng(i)))
        got = agent.update(buf.sample_tensors(size, np.random.default_rng(i), cpu, reuse=True))
        assert got == pytest.approx(want, rel=1e-5, abs=1e-7), f"update {i}"
    assert_state_close(agent.net.state_dict(), ref.net.state_dict())
    assert_state_close(agent.target.state_dict(), ref.target.state_dict())


@pytest.mark.parametrize("numpy", [True, False], ids=["numpy", "torch"])
@pytest.mark.parametrize("shared", [False, True], ids=["separate", "shared trunk"])
def test_hand_derived_gradient_equals_autograd_on_a_full_l(shared, numpy):
    """One step's gradient, with a non-trivial mu and a full L (larger head weights), a
    target network that differs from the online one and some true terminals."""
    agent = NAFAgent(OBS, ACT, AgentConfig(hidden=[32, 32], shared_trunk=shared), seed=5)
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        agent.net.heads.weight.add_(0.5 * torch.randn(agent.net.heads.weight.shape, generator=g))
        agent._target_flat.add_(0.1 * torch.randn(agent._target_flat.shape, generator=g))
    batch = filled_replay(2).sample(64, np.random.default_rng(2))
    t = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in batch.items()}
    assert 0 < float(t["terminal"].sum()) < 64
    with torch.no_grad():
        y = td_target(t["reward"], agent.target.value(t["next_obs"]), t["terminal"], 0.99)
    params = list(agent.net.parameters())
    loss = torch.mean((y - agent.net(t["obs"], t["action"])) ** 2)
    want = torch.autograd.grad(loss, params)
    fast = FastNAFUpdate(
        agent.net, agent.target, agent.optimizer.grad_views, gamma=0.99, numpy=numpy
    )
    assert fast.numpy == numpy
    for view in agent.optimizer.grad_views:
        view.fill_(float("nan"))  # every entry must be written (the alignment gaps stay 0)
    stats = fast.loss_and_grad(
        t["obs"], t["action"], t["reward"], t["next_obs"], t["terminal"], agent.optimizer.flat_grad
    )
    sse, norm = stats.tolist()
    assert sse / 64 == pytest.approx(float(loss.detach()), rel=1e-6)
    for got, w in zip(agent.optimizer.grad_views, want):  # float32 rounding of sums ~ 40
        torch.testing.assert_close(got, w, rtol=1e-5, atol=1e-6)
    want_norm = torch.linalg.vector_norm(torch.cat([w.flatten() for w in want]))
    assert norm == pytest.approx(float(want_norm), rel=1e-5)


def test_value_trunk_is_the_target_value():
    agent = NAFAgent(OBS, ACT, AgentConfig(hidden=[32, 32]), seed=1)
    obs = torch.randn(50, OBS)
    weights, biases, head_w, head_b = value_trunk(agent.target)
    h = obs
    for w, b in zip(weights, biases):
        h = torch.relu(h @ w + b)
    with torch.no_grad():
        torch.testing.assert_close((h @ head_w + head_b)[:, 0], agent.target.value(obs))


@pytest.mark.parametrize("bad", ["reward", "obs"])
def test_non_finite_loss_or_gradient_skips_and_keeps_everything(bad):
    agent = NAFAgent(OBS, ACT, AgentConfig(hidden=[16, 16]), seed=0)
    buf, rng = filled_replay(), np.random.default_rng(0)
    for _ in range(3):
        agent.update(buf.sample(32, rng))
    before = copy.deepcopy(agent.state_dict())
    batch = buf.sample(32, rng)
    batch[bad] = batch[bad].copy()
    batch[bad][0] = np.float32(3e38) if bad == "obs" else np.nan  # inf/NaN loss or gradient
    assert math.isnan(agent.update(batch))
    assert agent.skipped_updates == 1 and agent.updates == 3
    after = agent.state_dict()
    for part in ("net", "target"):
        for k, v in before[part].items():
            assert torch.equal(after[part][k], v), (part, k)
    for i, st in before["optimizer"]["state"].items():
        for k, v in st.items():
            assert torch.equal(after["optimizer"]["state"][i][k], v)
    # and the next good batch trains again
    assert math.isfinite(agent.update(buf.sample(32, rng))) and agent.updates == 4


def test_checkpoints_move_between_plain_adam_and_flat_adam():
    """The agent's state_dict has torch's layout: a reference-trained state loads into the
    fast agent and continues exactly like the reference; and back."""
    cfg = AgentConfig(hidden=[16, 16], tau=0.1)
    agent = NAFAgent(OBS, ACT, cfg, seed=2)
    ref = ReferenceAgent(agent)
    buf, rng = filled_replay(), np.random.default_rng(3)
    for _ in range(10):
        ref.update(buf.sample(32, rng))
    old_style = {
        "net": ref.net.state_dict(),
        "target": ref.target.state_dict(),
        "optimizer": ref.optimizer.state_dict(),
        "updates": 10,
        "skipped_updates": 0,
    }
    fresh = NAFAgent(OBS, ACT, cfg, seed=99)
    fresh.load_state_dict(copy.deepcopy(old_style))
    assert fresh.optimizer.steps == 10
    for _ in range(10):
        batch = buf.sample(32, rng)
        assert fresh.update(batch) == pytest.approx(ref.update(batch), rel=1e-5, abs=1e-7)
    assert_state_close(fresh.net.state_dict(), ref.net.state_dict())
    # the fast agent's checkpoint loads into plain torch.optim.Adam
    state = fresh.state_dict()
    assert set(state["net"]) == set(ref.net.state_dict())
    plain = torch.optim.Adam(list(ref.net.parameters()), lr=cfg.lr, foreach=True)
    plain.load_state_dict(state["optimizer"])
    assert float(plain.state[next(iter(plain.state))]["step"]) == 20.0
    # and the flat views survive a load: training after it still moves the weights
    w0 = fresh.net.heads.weight.detach().clone()
    fresh.update(buf.sample(32, rng))
    assert not torch.equal(fresh.net.heads.weight, w0)


def test_fresh_agent_state_dict_has_empty_optimizer_state():
    agent = NAFAgent(OBS, ACT, AgentConfig(hidden=[8]), seed=0)
    assert agent.optimizer.state_dict()["state"] == {}
    other = NAFAgent(OBS, ACT, AgentConfig(hidden=[8]), seed=1)
    other.load_state_dict(agent.state_dict())
    assert other.optimizer.steps == 0


@pytest.mark.parametrize("reuse", [False, True])
def test_sample_tensors_equals_sample(reuse):
    buf = filled_replay()
    a = buf.sample(16, np.random.default_rng(7))
    b = buf.sample_tensors(16, np.random.default_rng(7), torch.device("cpu"), reuse=reuse)
    assert set(b) == set(a) - {"step"}
    for k, v in b.items():
        assert v.dtype == torch.float32
        np.testing.assert_array_equal(v.numpy(), a[k])


def test_reused_sample_is_overwritten_by_the_next_reusing_draw_only():
    buf, cpu = filled_replay(), torch.device("cpu")
    first = buf.sample_tensors(16, np.random.default_rng(1), cpu, reuse=True)
    kept = {k: v.clone() for k, v in first.items()}
    fresh = buf.sample_tensors(16, np.random.default_rng(2), cpu)  # not reusing: untouched
    assert all(torch.equal(first[k], kept[k]) for k in kept)
    second = buf.sample_tensors(16, np.random.default_rng(2), cpu, reuse=True)
    assert torch.equal(first["obs"], fresh["obs"]) and torch.equal(second["obs"], fresh["obs"])
    assert buf.sample_tensors(8, np.random.default_rng(3), cpu, reuse=True)["obs"].shape[0] == 8


# --- agent.device -------------------------------------------------------------------------
def test_device_key_is_validated():
    assert config_from_dict({"agent": {"device": "cuda:1"}}).agent.device == "cuda:1"
    with pytest.raises(ConfigError, match=r"agent\.device"):
        config_from_dict({"agent": {"device": "gpu"}})


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match=r"agent\.device: 'cuda' requested") as info:
        resolve_device("cuda")
    assert "\n" not in str(info.value)


def test_learner_trains_on_the_configured_device_and_publishes_cpu_weights():
    from naf_ros.core.learner import Learner

    cfg = config_from_dict({"agent": {"hidden": [8, 8], "warmup_steps": 0, "batch_size": 8}})
    learner = Learner(cfg, OBS, ACT, horizon=None)
    assert learner.agent.device == torch.device("cpu")
    rng = np.random.default_rng(0)
    for t in range(10):
        tr = {
            "obs": rng.normal(size=OBS), "action": rng.uniform(-1, 1, ACT), "reward": 0.1,
            "next_obs": rng.normal(size=OBS), "terminal": False, "truncated": False, "t": t,
        }  # fmt: skip
        learner.add(tr)
        learner.learn()
    assert learner.agent.updates == 5 * 3  # warm (8 in R) from the 8th transition on
    assert all(isinstance(a, np.ndarray) for a in learner.agent.weight_arrays().values())


# The device cases: cpu everywhere, cuda where torch sees a device. On a machine without one
# the cuda cases are not generated (rather than skipped), and conftest.py prints why in the
# session header, so a CPU-only CI run has no skips and still says what it did not test.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_update_on_a_device_matches_the_default_cpu_update(device):
    cfg = AgentConfig(hidden=[32, 32], tau=0.05)
    cpu = NAFAgent(OBS, ACT, cfg, seed=4)
    dev = NAFAgent(OBS, ACT, cfg, seed=4, device=device)
    assert dev.device.type == device
    buf, rng = filled_replay(), np.random.default_rng(4)
    for _ in range(20):
        idx_rng = np.random.default_rng(rng.integers(1 << 30))
        batch = buf.sample(64, idx_rng)
        on_dev = buf.sample_tensors(64, np.random.default_rng(idx_rng), dev.device)
        assert all(t.device.type == device for t in on_dev.values())
        assert dev.update(batch) == pytest.approx(cpu.update(batch), rel=1e-4, abs=1e-6)
    assert_state_close(dev.state_dict()["net"], cpu.state_dict()["net"], rtol=1e-4, atol=1e-5)
    assert all(v.device.type == "cpu" for v in dev.state_dict()["net"].values())
    assert np.asarray(dev.act(np.zeros(OBS))).shape == (ACT,)
    assert all(a.dtype == np.float32 for a in dev.weight_arrays().values())


@pytest.mark.parametrize("device", DEVICES)
def test_learner_trains_on_a_configured_device(device):
    from naf_ros.core.learner import Learner

    cfg = config_from_dict(
        {"agent": {"hidden": [8, 8], "warmup_steps": 0, "batch_size": 8, "device": device}}
    )
    learner = Learner(cfg, OBS, ACT, horizon=None)
    assert learner.agent.device.type == device
    rng = np.random.default_rng(0)
    for t in range(10):
        tr = {
            "obs": rng.normal(size=OBS), "action": rng.uniform(-1, 1, ACT), "reward": 0.1,
            "next_obs": rng.normal(size=OBS), "terminal": False, "truncated": False, "t": t,
        }  # fmt: skip
        learner.add(tr)
        learner.learn()
    assert learner.agent.updates == 5 * 3


def test_batch_norm_path_is_bitwise_the_reference():
    """FlatAdam(exact=True) runs torch's foreach arithmetic: the autograd path is unchanged."""
    cfg = AgentConfig(hidden=[16, 16], batch_norm=True, tau=0.05)
    agent = NAFAgent(OBS, ACT, cfg, seed=6)
    assert agent.optimizer.exact
    ref = ReferenceAgent(agent)
    buf, rng = filled_replay(), np.random.default_rng(6)
    for _ in range(15):
        batch = buf.sample(64, rng)
        assert agent.update(batch) == ref.update(batch)
    for (k, got), want in zip(agent.net.state_dict().items(), ref.net.state_dict().values()):
        assert torch.equal(got, want), k


# --- agent.compile ------------------------------------------------------------------------
def _boom(*args, **kwargs):
    raise RuntimeError("no C++ compiler")


@pytest.mark.parametrize("where", ["compile", "first call"])
def test_compile_falls_back_to_eager(monkeypatch, where):
    if where == "compile":
        monkeypatch.setattr(torch, "compile", _boom)
    else:
        monkeypatch.setattr(torch, "compile", lambda fn, **kw: _boom)
    cfg = AgentConfig(hidden=[8, 8])
    eager = NAFAgent(OBS, ACT, cfg, seed=0)
    with pytest.warns(UserWarning, match="agent.compile"):
        compiled = NAFAgent(OBS, ACT, AgentConfig(hidden=[8, 8], compile=True), seed=0)
        batch = filled_replay().sample(32, np.random.default_rng(0))
        assert compiled.update(batch) == eager.update(batch)
    assert compiled.update(batch) == eager.update(batch)  # eager for good, no second warning
