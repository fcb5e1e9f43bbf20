"""Published weights checked before they touch a network: one rule for every agent.

A policy node loads what arrives on ``/naf/weights``; a malformed or non-finite set must be
refused whole (ValueError naming the problem) so the arm keeps acting on the last good one.
"""

from __future__ import annotations

import numpy as np
import torch


def checked_tensors(
    own: dict[str, torch.Tensor], arrays: dict[str, np.ndarray]
) -> dict[str, torch.Tensor]:
    """``arrays`` as tensors shaped, typed and placed like ``own``; ValueError on missing or
    unexpected names, a wrong shape or a non-finite value."""
    missing = sorted(set(own) - set(arrays))
    extra = sorted(set(arrays) - set(own))
    if missing or extra:
        raise ValueError(f"weights: missing {missing[:3]}, unexpected {extra[:3]}")
    new = {}
    for name, ref in own.items():
        arr = np.asarray(arrays[name])
        if arr.shape != tuple(ref.shape):
            raise ValueError(f"weights: {name} has shape {arr.shape}, expected {tuple(ref.shape)}")
        if not np.isfinite(arr).all():
            raise ValueError(f"weights: {name} holds non-finite values")
        new[name] = torch.as_tensor(arr, dtype=ref.dtype, device=ref.device)
    return new


ACTOR_PREFIX = "actor."  # an actor-critic agent publishes only its actor, under this prefix


def actor_arrays(actor: torch.nn.Module) -> dict[str, np.ndarray]:
    """The actor's weights as ``actor.*`` arrays: all a policy node needs to act (DDPG's
    deterministic actor, SVG(1)-ER's Gaussian policy)."""
    return {
        ACTOR_PREFIX + k: v.detach().cpu().numpy().copy() for k, v in actor.state_dict().items()
    }


def load_actor_arrays(actor: torch.nn.Module, arrays: dict[str, np.ndarray]) -> None:
    """Load published ``actor.*`` weights into ``actor``, all or nothing (ValueError on missing
    names, shapes or non-finite values)."""
    own = {ACTOR_PREFIX + k: v for k, v in actor.state_dict().items()}
    checked = checked_tensors(own, arrays)
    actor.load_state_dict({k.removeprefix(ACTOR_PREFIX): v for k, v in checked.items()})
