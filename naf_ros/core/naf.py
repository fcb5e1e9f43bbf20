"""NAF agent (paper Algorithm 1): Q-learning with a normalized advantage function.

Target y = r + gamma * (1 - terminal) * V'(x'). Truncation by a time limit is not terminal,
so callers pass terminal=0 for it and the target bootstraps through.
"""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import torch
from torch import nn
from torch.optim import optimizer as optim_hooks

from naf_ros.config import AgentConfig, ConfigError
from naf_ros.core.naf_fast import FastNAFUpdate
from naf_ros.core.networks import NAFNetwork
from naf_ros.core.weights import checked_tensors

ALIGN = 16  # floats: each parameter's view in a flat buffer starts on a 64-byte boundary
BATCH_FIELDS = ("obs", "action", "reward", "next_obs", "terminal")


def td_target(
    reward: torch.Tensor, next_value: torch.Tensor, terminal: torch.Tensor, gamma: float
) -> torch.Tensor:
    """y = r + gamma (1 - terminal) V'(x'): the product with (1 - terminal), never a sum."""
    return reward + gamma * (1.0 - terminal) * next_value


def resolve_device(name: str) -> torch.device:
    """``agent.device`` as a torch device; a CUDA device torch cannot see is a config error
    at start, not a crash at the first update."""
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        raise ConfigError(
            f"agent.device: {name!r} requested but torch ({torch.__version__}, {build}) sees "
            "no CUDA device; use agent.device=cpu"
        )
    device = torch.device(name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(
            f"agent.device: {name!r} requested but only {torch.cuda.device_count()} CUDA "
            "device(s) exist"
        )
    return device


def flatten_parameters(params: list[nn.Parameter]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Re-home ``params`` as views of one flat tensor (values kept); returns it and the views.

    Why: the optimiser step and the soft target update then run as a few whole-buffer
    operations instead of a few per parameter. The module's state_dict is unchanged (the
    parameters keep names and shapes); ``load_state_dict`` copies in place, so the views
    survive it. Moving the module (``.to``) afterwards would break them: move first.
    """
    sizes = [p.numel() for p in params]
    offsets, total = [], 0
    for n in sizes:
        offsets.append(total)
        total += -(-n // ALIGN) * ALIGN
    ref = params[0]
    flat = torch.zeros(total, dtype=ref.dtype, device=ref.device)
    views = []
    for p, off, n in zip(params, offsets, sizes):
        view = flat[off : off + n].view_as(p)
        view.copy_(p.detach())
        p.data = view
        views.append(view)
    return flat, views


def views_like(flat_ref: torch.Tensor, views_ref: list[torch.Tensor]):
    """A zero tensor shaped like ``flat_ref`` and views of it where ``views_ref`` sit."""
    flat = torch.zeros_like(flat_ref)
    base = views_ref[0].storage_offset() if views_ref else 0
    views = []
    for v in views_ref:
        off = v.storage_offset() - base
        views.append(flat[off : off + v.numel()].view_as(v))
    return flat, views


class FlatAdam(torch.optim.Adam):
    """Adam over parameters that live in one flat tensor: each step is one fused kernel
    (``torch._fused_adam_``, what ``Adam(fused=True)`` runs) over the whole buffer instead of
    several foreach operations per parameter.

    Plain Adam only (no weight decay, amsgrad or maximize). The fused kernel orders the
    arithmetic slightly differently from the foreach one (float32 rounding, tested to 1e-5).
    ``exact=True`` runs torch's foreach arithmetic on the flat buffers instead (bit for bit
    the same as ``Adam(foreach=True)``, ~2.5x slower): with batch norm, the gradient of a
    bias feeding a normalisation is rounding noise that Adam scales to +-lr steps, so any
    rounding difference there grows; that path keeps the reference arithmetic.
    ``state_dict`` / ``load_state_dict`` keep torch's layout (per-parameter ``step``,
    ``exp_avg``, ``exp_avg_sq``), so checkpoints move between the two freely. Gradients are
    expected in :attr:`flat_grad` (the parameters' ``.grad`` are views of it); step hooks
    still fire.
    """

    def __init__(
        self, params: list[nn.Parameter], flat: torch.Tensor, lr: float, exact: bool = False
    ) -> None:
        super().__init__(params, lr=lr, foreach=True)
        self.exact = exact
        self.params = list(params)
        self.flat = flat
        base = [p.detach() for p in self.params]
        self.flat_grad, self.grad_views = views_like(flat, base)
        self.exp_avg, self.exp_avg_views = views_like(flat, base)
        self.exp_avg_sq, self.exp_avg_sq_views = views_like(flat, base)
        self._step = torch.zeros((), dtype=torch.float32, device=flat.device)
        self.steps = 0
        self.bind_grads()

    def bind_grads(self) -> None:
        """Point every ``.grad`` at its view of :attr:`flat_grad` (autograd accumulates into
        an existing ``.grad`` in place)."""
        for p, g in zip(self.params, self.grad_views):
            if p.grad is not g:
                if p.grad is not None:
                    g.copy_(p.grad)
                p.grad = g

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.flat_grad.zero_()
        self.bind_grads()

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's signature
        if closure is not None:
            raise ValueError("FlatAdam.step takes no closure")
        self.bind_grads()
        group = self.param_groups[0]
        if group["weight_decay"] or group["amsgrad"] or group["maximize"]:
            raise ValueError("FlatAdam implements plain Adam only")
        beta1, beta2 = group["betas"]
        self.steps += 1
        if self.exact:
            self._foreach_arithmetic(group["lr"], beta1, beta2, group["eps"])
            return None
        self._fused_kernel(group, beta1, beta2)
        return None

    def _fused_kernel(self, group: dict, beta1: float, beta2: float) -> None:
        self._step.fill_(float(self.steps))
        torch._fused_adam_(
            [self.flat], [self.flat_grad], [self.exp_avg], [self.exp_avg_sq], [], [self._step],
            lr=float(group["lr"]), beta1=beta1, beta2=beta2, weight_decay=0.0,
            eps=group["eps"], amsgrad=False, maximize=False,
        )  # fmt: skip

    def _has_hooks(self) -> bool:
        return bool(
            self._optimizer_step_pre_hooks
            or self._optimizer_step_post_hooks
            or optim_hooks._global_optimizer_pre_hooks
            or optim_hooks._global_optimizer_post_hooks
        )

    @torch.no_grad()
    def step_fast(self) -> None:
        """:meth:`step` without ``Optimizer.step``'s wrapper (profiler record, hook
        dispatch: ~15 us, a quarter of the step at 2x200) when no step hook is registered;
        with one, :meth:`step` itself, so hooks always fire. Gradients must already be in
        :attr:`flat_grad` (the fast update writes them there)."""
        group = self.param_groups[0]
        plain = not (group["weight_decay"] or group["amsgrad"] or group["maximize"])
        if self.exact or not plain or self._has_hooks():
            self.step()  # which refuses what is not plain Adam
            return
        self.steps += 1
        beta1, beta2 = group["betas"]
        self._fused_kernel(group, beta1, beta2)

    def _foreach_arithmetic(self, lr: float, beta1: float, beta2: float, eps: float) -> None:
        """torch's ``_multi_tensor_adam`` step, its scalars formed the same way."""
        bias_correction1 = 1 - beta1 ** float(self.steps)
        bias_correction2 = 1 - beta2 ** float(self.steps)
        step_size = (lr / bias_correction1) * -1
        g = self.flat_grad
        self.exp_avg.lerp_(g, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        denom = self.exp_avg_sq.sqrt().div_(bias_correction2**0.5).add_(eps)
        self.flat.addcdiv_(self.exp_avg, denom, value=step_size)

    # --- torch's state layout -----------------------------------------------------------------
    def state_dict(self) -> dict:
        self.state.clear()
        if self.steps:
            for p, m, v in zip(self.params, self.exp_avg_views, self.exp_avg_sq_views):
                step = torch.tensor(float(self.steps), dtype=torch.float32)
                self.state[p] = {"step": step, "exp_avg": m, "exp_avg_sq": v}
        return super().state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        steps = set()
        for p, m, v in zip(self.params, self.exp_avg_views, self.exp_avg_sq_views):
            st = self.state.get(p)
            if not st:
                m.zero_()
                v.zero_()
                steps.add(0)
                continue
            m.copy_(st["exp_avg"])
            v.copy_(st["exp_avg_sq"])
            steps.add(int(float(st["step"])))
        if len(steps) > 1:
            raise ValueError(f"optimizer state: parameters at different Adam steps {steps}")
        self.steps = steps.pop() if steps else 0
        self.state.clear()  # the flat buffers hold it; state_dict() rebuilds the views


class NAFAgent:
    """Online network, soft-updated target network and Adam, on normalised actions [-1, 1].

    ``device`` is where the networks live and train (``agent.device``; the learner passes
    it). It defaults to the CPU, not to ``cfg.device``: a policy process builds an agent only
    to hold published weights and acts on the CPU whatever the learner trains on.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        cfg: AgentConfig,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        self.cfg = cfg
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        torch.manual_seed(seed)
        self.net = NAFNetwork(
            obs_dim, act_dim, cfg.hidden, cfg.shared_trunk, cfg.batch_norm, cfg.max_log_diag
        ).to(self.device)
        self.target = copy.deepcopy(self.net)
        self.target.eval()
        self._params = list(self.net.parameters())
        self._target_params = list(self.target.parameters())
        self._flat, _ = flatten_parameters(self._params)
        self._target_flat, _ = flatten_parameters(self._target_params)
        # Without batch norm, one update is FastNAFUpdate's hand-derived forward/backward (no
        # autograd) and a fused Adam kernel; with it, autograd and torch's foreach arithmetic.
        self.fused = self.net.fusable
        self.optimizer = FlatAdam(self._params, self._flat, lr=cfg.lr, exact=not self.fused)
        # Only buffers a checkpoint holds (batch norm's statistics) follow the online net;
        # the non-persistent ones are constants (triangle indices, one-hot selections).
        persistent = set(self.net.state_dict())
        self._buffers = [
            (b_t, b)
            for (name, b_t), b in zip(self.target.named_buffers(), self.net.buffers())
            if name in persistent
        ]
        # The fused path's loss and gradient (FastNAFUpdate); setting ``fused = False`` later
        # forces autograd on any network (tests compare the two).
        self._loss_and_grad = None
        if self.fused:
            fast = FastNAFUpdate(self.net, self.target, self.optimizer.grad_views, cfg.gamma)
            self._loss_and_grad = fast.loss_and_grad
            if cfg.compile:
                self._loss_and_grad = compiled_or_eager(fast.loss_and_grad)
        self.updates = 0
        self.skipped_updates = 0
        self.last_loss = float("nan")

    # --- acting --------------------------------------------------------------------------
    def _as_input(self, obs: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(obs, np.float32), device=self.device)

    @torch.no_grad()
    def mu_and_lower(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """mu(x) and L(x) for one state, in eval mode (batch norm uses running statistics)."""
        was_training = self.net.training
        self.net.eval()
        _, mu, lower = self.net.value_mu_l(self._as_input(obs).unsqueeze(0))
        self.net.train(was_training)
        return mu[0].cpu().numpy().astype(np.float64), lower[0].cpu().numpy().astype(np.float64)

    @torch.no_grad()
    def mu_batch(self, obs: np.ndarray) -> np.ndarray:
        was_training = self.net.training
        self.net.eval()
        mu = self.net.mu(self._as_input(obs))
        self.net.train(was_training)
        return mu.cpu().numpy().astype(np.float64)

    @torch.no_grad()
    def lower_batch(self, obs: np.ndarray) -> np.ndarray:
        """L(x) for a batch of states (precision exploration of imagined rollouts)."""
        was_training = self.net.training
        self.net.eval()
        _, _, lower = self.net.value_mu_l(self._as_input(obs))
        self.net.train(was_training)
        return lower.cpu().numpy().astype(np.float64)

    def act(self, obs: np.ndarray, noise=None) -> np.ndarray:
        """mu(x) (+ noise), clipped to [-1, 1]; deterministic when ``noise`` is None."""
        mu, lower = self.mu_and_lower(obs)
        if noise is not None:
            mu = mu + noise.sample(lower)
        return np.clip(mu, -1.0, 1.0)

    # --- learning ------------------------------------------------------------------------
    def update(self, batch: dict) -> float:
        """One minibatch step of the Q loss; returns the loss, or NaN if the step was skipped.

        ``batch`` holds obs, action, reward, next_obs and terminal as arrays or tensors
        (``ReplayBuffer.sample_tensors`` hands them over on the device already). A non-finite
        loss or gradient skips the step, so the weights stay the last good ones; that check
        is the update's one host synchronisation.
        """
        obs, action, reward, next_obs, terminal = (
            torch.as_tensor(batch[k], dtype=torch.float32, device=self.device) for k in BATCH_FIELDS
        )
        opt = self.optimizer
        if self.fused:
            stats = self._loss_and_grad(obs, action, reward, next_obs, terminal, opt.flat_grad)
            sse, norm_value = stats.tolist()
            loss_value = sse / obs.shape[0]
        else:
            with torch.no_grad():
                next_value = self.target.value(next_obs)
                y = td_target(reward, next_value, terminal, self.cfg.gamma)
            self.net.train()
            q = self.net(obs, action)
            loss = torch.mean((y - q) ** 2)
            opt.zero_grad()  # backward accumulates into the flat gradient in place
            loss.backward()
            grad_norm = torch.linalg.vector_norm(opt.flat_grad)
            loss_value, norm_value = torch.stack((loss.detach(), grad_norm)).tolist()
        if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
            self.skipped_updates += 1
            return float("nan")
        clip = self.cfg.grad_clip
        if clip is not None:
            coef = clip / (norm_value + 1e-6)  # as clip_grad_norm_ forms it
            if coef < 1.0:
                opt.flat_grad.mul_(coef)
        opt.step_fast()
        self.soft_update()
        self.updates += 1
        self.last_loss = loss_value
        return loss_value

    @torch.no_grad()
    def soft_update(self) -> None:
        """theta' <- tau theta + (1 - tau) theta'; batch-norm running statistics follow too."""
        tau = self.cfg.tau
        self._target_flat.lerp_(self._flat, tau)
        for b_t, b in self._buffers:
            if b_t.dtype.is_floating_point:
                b_t.mul_(1.0 - tau).add_(b, alpha=tau)
            else:
                b_t.copy_(b)

    # --- persistence / transport ----------------------------------------------------------------
    def state_dict(self) -> dict:
        """CPU tensors whatever the device, so a checkpoint loads on any machine."""
        return {
            "net": _to_cpu(self.net.state_dict()),
            "target": _to_cpu(self.target.state_dict()),
            "optimizer": _to_cpu(self.optimizer.state_dict()),
            "updates": self.updates,
            "skipped_updates": self.skipped_updates,
        }

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])
        self.skipped_updates = int(state["skipped_updates"])

    def weight_arrays(self) -> dict[str, np.ndarray]:
        """Online-network weights as named float arrays (what the learner publishes)."""
        return {k: v.detach().cpu().numpy().copy() for k, v in self.net.state_dict().items()}

    def load_weight_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Load published weights; raises ValueError on missing names, shapes or non-finite."""
        new = checked_tensors(self.net.state_dict(), arrays)
        self.net.load_state_dict(new)


def _to_cpu(value):
    """A (nested) state dict with its tensors on the CPU; CPU tensors pass through as-is."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value


def compiled_or_eager(fn):
    """``torch.compile(fn)`` if the compiler works here, else ``fn`` with a warning.

    Opt-in (``agent.compile``) because it does not pay on a small CPU: on the 2-core
    development machine the first update compiled for ~5 minutes (shared, loaded) and the
    compiled 2x64 update then ran ~25% slower than the eager one (measured on the fused
    function before :class:`FastNAFUpdate`, which is faster still eagerly). It is meant for
    CUDA, where fusing the ~60 small kernels of an update saves their launch latency. The
    first call compiles; a failure there falls back to eager for good.
    """
    try:
        compiled = torch.compile(fn, dynamic=False)
    except Exception as exc:  # noqa: BLE001 - no compiler: eager is always correct
        warnings.warn(
            f"agent.compile: torch.compile unavailable ({exc}); running eager", stacklevel=2
        )
        return fn
    state = {"fn": compiled}

    def call(*args, **kwargs):
        try:
            return state["fn"](*args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            if state["fn"] is fn:
                raise
            warnings.warn(
                f"agent.compile: compiling failed ({type(exc).__name__}); eager", stacklevel=2
            )
            state["fn"] = fn
            return fn(*args, **kwargs)

    return call
