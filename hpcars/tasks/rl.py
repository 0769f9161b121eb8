"""Reinforcement learning on Gymnasium environments (MuJoCo locomotion, classic control).

A branch's reward is the return of one episode of its perturbed policy. A rank runs
the episodes of a batch of branches in lockstep: at every step one batched call
computes the actions of all of them (``BatchedModel.per_branch``) and each env that
is still running is stepped; finished episodes drop out of the stepping. The call
keeps its fixed shape (finished and padding rows are fed their last observation
and ignored), so an action never depends on how many branches share the batch —
part of the world-size invariance.

* Seeds: the episode of branch b in iteration j is episode b of the key (seed,
  ENV_STREAM, j, member) — the env backend (``hpcars.tasks.env_backends``) makes it the
  same episode whatever rank runs it; evaluation episode e of iteration j is
  episode e of (seed, EVAL_STREAM, j, 0). Runs are reproducible.
* Actions: continuous (Box) actions are the policy output clipped to the action
  bounds (``--clip-actions false``: passed raw, as in the authors' code); discrete
  actions are the argmax of one output per action.
* Shift (ARS paper, §"Modifications"): during training ``shift`` is subtracted from
  every step's reward (the survival bonus of Hopper, Walker2d, Ant, Humanoid);
  evaluation returns are unshifted.
* Counting: every training branch is one episode; env steps are counted exactly
  (the paper's x-axis). Evaluation episodes and steps are reported separately.
* V2: the moments (count, mean, M2) of every observation a branch's policy was fed
  are returned per branch; the trainer merges them in branch order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from hpcars.algorithm.branches import BatchedModel, Stack
from hpcars.algorithm.models import mlp
from hpcars.algorithm.noise import stream_key
from hpcars.tasks.base import BranchOutcome, ObsMoments
from hpcars.tasks.env_backends import EpisodeKey, make_backend

ENV_STREAM = 0xE4F
EVAL_STREAM = 0xE7A1
INIT_STREAM = 0x1A17


def _moments(history: np.ndarray, lengths: np.ndarray) -> ObsMoments:
    """Per-branch count, mean and M2 (two-pass, float64) of history[t, b] for t < lengths[b]."""
    seen = (np.arange(history.shape[0])[:, None] < lengths[None, :])[:, :, None]  # [T, n, 1]
    x = history.astype(np.float64)
    mean = np.where(seen, x, 0.0).sum(axis=0) / lengths[:, None]
    m2 = np.where(seen, (x - mean) ** 2, 0.0).sum(axis=0)
    return ObsMoments(lengths.copy(), mean, m2)


class GymTask:
    sample_unit = "env steps"
    episodes_per_branch = 1
    eval_fields: tuple[str, ...] = ("return", "steps")
    eval_columns: tuple[str, ...] = (
        "score",
        "eval_return_mean",
        "eval_return_std",
        "eval_return_min",
        "eval_return_max",
        "eval_steps",
    )

    def __init__(
        self,
        env_id: str,
        seed: int,
        *,
        policy: str = "linear",
        hidden: int = 32,
        shift: float = 0.0,
        eval_episodes: int = 100,
        branch_batch: int = 64,
        track_obs: bool = True,
        env_backend: str = "gymnasium",
        clip_actions: bool = True,
    ) -> None:
        import gymnasium

        self.name = env_id
        self.seed = seed
        self.policy = policy
        self.hidden = hidden
        self.shift = shift
        self.eval_units = eval_episodes
        self.branch_batch = branch_batch
        self.track_obs = track_obs  # V2 only: V1 skips the bookkeeping in the step loop
        self.env_id = env_id
        self.clip_actions = clip_actions
        self.backend = make_backend(env_backend, env_id)
        space = self.backend.action_space
        self.discrete = isinstance(space, gymnasium.spaces.Discrete)
        self.input_dim = int(np.prod(self.backend.observation_space.shape))
        self.action_dim = int(space.n) if self.discrete else int(np.prod(space.shape))
        self.low = None if self.discrete else torch.as_tensor(space.low, dtype=torch.float32)
        self.high = None if self.discrete else torch.as_tensor(space.high, dtype=torch.float32)

    def close(self) -> None:
        """Close the environments (a run that ends or fails gives them back)."""
        self.backend.close()

    # -- model ------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        if self.policy == "linear":  # the paper's policy: zero-initialised, no bias
            linear = nn.Linear(self.input_dim, self.action_dim, bias=False)
            nn.init.zeros_(linear.weight)
            return linear
        model = mlp([self.input_dim, self.hidden, self.hidden, self.action_dim])
        g = torch.Generator().manual_seed(stream_key(self.seed ^ INIT_STREAM, 0, 0, 0) & (2**63 - 1))
        with torch.no_grad():
            for p in model.parameters():
                bound = 1.0 / (p.shape[-1] ** 0.5) if p.dim() > 1 else 0.0
                p.uniform_(-bound, bound, generator=g)
        return model

    def to_actions(self, out: torch.Tensor) -> np.ndarray:
        """Policy outputs [..., outputs] (CPU) -> env actions: argmax (Discrete), or the outputs
        clipped to the Box (raw with ``clip_actions=False``)."""
        if self.discrete:
            return out.argmax(dim=-1).numpy()
        return torch.clamp(out, self.low, self.high, out=out).numpy() if self.clip_actions else out.numpy()

    # -- rollouts -----------------------------------------------------------------------
    def rollouts(
        self,
        model: BatchedModel,
        stack: Stack,
        key: EpisodeKey,
        indices: Sequence[int],
        shift: float,
        record: bool,
    ) -> tuple[np.ndarray, np.ndarray, ObsMoments | None]:
        """Episodes ``indices`` of ``key``, the policy of row i of ``stack`` for the i-th, in lockstep.

        This is the hot loop of RL training: per lockstep step one policy call for all
        rows, one copy of the observations (when ``record``), then one backend step of
        the running episodes, and little else. Recorded observations (float32,
        T × n × d) are reduced to per-branch moments once, after the episodes end.
        """
        n, rows = len(indices), stack.shape[0]
        obs = torch.zeros((rows, self.input_dim), dtype=torch.float32)
        obs_np = obs.numpy()  # shares memory with obs: the backend's observations land here
        obs_np[:n] = self.backend.reset(key, indices)
        returns = np.zeros(n)
        steps = np.zeros(n)
        history: list[np.ndarray] = []
        active = np.arange(n)
        on_cpu = stack.device.type == "cpu"
        with torch.inference_mode():
            policy = model.bind(stack)
            while active.size:
                if record:
                    history.append(obs_np[:n].copy())
                actions = self.to_actions(policy(obs if on_cpu else obs.to(stack.device)).cpu())
                if active.size == n:  # every episode still running (the common case): no index copies
                    ob, reward, done = self.backend.step(actions[:n], active)
                    returns += reward
                    steps += 1
                else:
                    ob, reward, done = self.backend.step(actions[active], active)
                    returns[active] += reward
                    steps[active] += 1
                if done.any():
                    running = ~done
                    active = active[running]
                    obs_np[active] = ob[running]
                elif active.size == n:
                    obs_np[:n] = ob
                else:
                    obs_np[active] = ob
        moments = _moments(np.stack(history), steps) if record else None
        # the survival bonus comes off every step: T steps cost shift * T
        return returns - shift * steps, steps, moments

    # -- the Task interface ------------------------------------------------------------------
    def begin_iteration(self, iteration: int, member: int, device: torch.device) -> tuple[int, int]:
        return iteration, member

    def rewards(
        self, model: BatchedModel, stack: Stack, context: tuple[int, int], branches: Sequence[int]
    ) -> BranchOutcome:
        iteration, member = context
        key = EpisodeKey(self.seed, ENV_STREAM, iteration, member)
        returns, steps, moments = self.rollouts(model, stack, key, branches, self.shift, record=self.track_obs)
        return BranchOutcome(returns, steps, moments)

    def evaluate_units(
        self, model: BatchedModel, flat: torch.Tensor, units: Sequence[int], iteration: int
    ) -> np.ndarray:
        rows = []
        stack = flat[None].expand(self.branch_batch, -1)
        for start in range(0, len(units), self.branch_batch):
            chunk = units[start : start + self.branch_batch]
            key = EpisodeKey(self.seed, EVAL_STREAM, iteration, 0)
            returns, steps, _ = self.rollouts(model, stack, key, chunk, 0.0, record=False)
            rows.append(np.stack((returns, steps), axis=1))
        return np.concatenate(rows)

    def summarize(self, rows: np.ndarray) -> dict[str, float]:
        returns = rows[:, 0]
        mean = float(returns.mean())
        return {
            "score": mean,
            "eval_return_mean": mean,
            "eval_return_std": float(returns.std()),
            "eval_return_min": float(returns.min()),
            "eval_return_max": float(returns.max()),
            "eval_steps": float(rows[:, 1].sum()),
        }

    def describe(self, model: BatchedModel, flat: torch.Tensor) -> str:
        kind = "linear" if self.policy == "linear" else f"MLP {self.hidden}x{self.hidden}"
        return f"{self.name}: {kind} policy, {self.input_dim} observations -> {self.action_dim} actions"
