"""The trainer's state to and from a ``Checkpoint``: one pair, used by training and benches.

``snapshot(trainer)`` captures everything the parameter trajectory depends on —
every member's parameters, the model's buffers, the population's search state,
the counters, the V2 statistics and the task's own state (e.g. batch priorities)
— as a ``Checkpoint`` whose run-level fields (config, clock,
world sizes, metrics, target) are left for the caller to fill with
``dataclasses.replace``. ``restore(trainer, ckpt)`` puts exactly that back, after
checking that the checkpoint fits the trainer's model and options; a resumed run
then continues bit for bit (noise, mini-batches and env seeds are functions of the
iteration counter, so no generator state is needed).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hpcars.algorithm.models import NORMALISER_BUFFERS, Normalized
from hpcars.algorithm.noise import NoiseSource
from hpcars.algorithm.spaces import space_from_arrays
from hpcars.errors import CheckpointError
from hpcars.population.state import PopulationState
from hpcars.run.checkpoint import Checkpoint, Member
from hpcars.run.engine import ARSTrainer, space_options


def snapshot(trainer: ARSTrainer) -> Checkpoint:
    """The trainer's state; run-level fields are defaults for the caller to replace."""
    state = trainer.state
    return Checkpoint(
        config={},
        iteration=trainer.iteration,
        total_episodes=trainer.total_episodes,
        total_samples=trainer.total_samples,
        skipped_steps=trainer.skipped_steps,
        elapsed_s=0.0,
        members=[Member(trainer.named_params(m), float(state.fitness[m])) for m in range(state.members)],
        population=_population_arrays(trainer),
        obs_stat=trainer.obs_stat,
        params_sha256=trainer.params_sha256(),
        buffers=_buffers(trainer.models[0].module),
        task_state=trainer.task.state_arrays() if hasattr(trainer.task, "state_arrays") else {},
        search_space=_search_space(trainer),
        search_space_info=trainer.space.describe(),
        noise_scheme=trainer.noise.scheme,
        call_width=trainer.width,
    )


def _population_arrays(trainer: ARSTrainer) -> dict[str, np.ndarray]:
    """The population's search state, and (repulsion) the origin θ₀ its tabu radius is measured from:
    on a resume the task's own θ₀ is not the run's after ``--init-from`` or in a compressed space."""
    arrays = trainer.state.arrays()
    if trainer.population.params.repulsion.enabled:
        arrays["origin"] = trainer.population.origin.cpu().numpy()
    return arrays


def _search_space(trainer: ARSTrainer) -> dict[str, np.ndarray]:
    """The searched vectors z [M, d] and the space's structure; nothing for the full space (z = θ)."""
    if trainer.space.kind == "full":
        return {}
    return {"z": trainer.state.theta.cpu().numpy(), **trainer.space.arrays()}


def _buffers(module: nn.Module) -> dict[str, np.ndarray]:
    """The model's buffers but V2's normaliser (it derives from the observation statistics)."""
    derived = set(NORMALISER_BUFFERS) if isinstance(module, Normalized) else set()
    return {n: b.cpu().numpy() for n, b in module.named_buffers() if n not in derived}


def _flat_members(trainer: ARSTrainer, ckpt: Checkpoint) -> torch.Tensor:
    """Every member's parameters [M, P] in the trainer's flat order, checked against its model."""
    spec = trainer.spec
    rows = []
    for member in ckpt.members:
        if list(member.params) != list(spec.names):
            raise CheckpointError(
                f"checkpoint parameters {list(member.params)} do not fit this model {list(spec.names)}"
            )
        flat = np.concatenate([np.asarray(member.params[n], dtype=np.float32).reshape(-1) for n in spec.names])
        if flat.size != spec.size:
            raise CheckpointError(f"checkpoint has {flat.size} parameters, this model {spec.size}")
        rows.append(flat)
    return torch.from_numpy(np.stack(rows)).to(trainer.primary)


def restore(trainer: ARSTrainer, ckpt: Checkpoint) -> None:
    """Continue from ``ckpt``: parameters, population state, counters and V2 statistics, exactly as saved."""
    members = trainer.cfg.population
    if len(ckpt.members) != members:
        raise CheckpointError(f"checkpoint has {len(ckpt.members)} members, --population is {members}")
    theta = _flat_members(trainer, ckpt)
    if trainer.space.kind != "full":  # the space as it was built (from θ₀), and the searched z
        if "z" not in ckpt.search_space:
            raise CheckpointError(f"checkpoint has no search space state for --search-space {trainer.space.kind}")
        try:
            trainer.space = space_from_arrays(
                space_options(trainer.cfg), trainer.spec, ckpt.search_space, trainer.primary
            )
        except (KeyError, ValueError) as err:
            raise CheckpointError(f"checkpoint search space does not fit this model: {err}") from None
        theta = torch.from_numpy(np.asarray(ckpt.search_space["z"], dtype=np.float32)).to(trainer.primary)
    population = trainer.population
    if ckpt.population is None:  # format 1: a single plain-ARS member
        population.state.theta = theta
    else:
        try:
            population.state = PopulationState.from_arrays(
                theta, ckpt.population, population.params.annealing.enabled, population.params.swarm.enabled
            )
        except KeyError as err:
            raise CheckpointError(f"checkpoint does not fit these population options: {err}") from None
        if "origin" in ckpt.population:  # format 4; older files: the rebuilt θ₀ (exact without --init-from)
            origin = np.asarray(ckpt.population["origin"], dtype=np.float32)
            population.origin = torch.from_numpy(origin).to(population.origin.device)
    trainer.noise = NoiseSource(trainer.cfg.seed, ckpt.noise_scheme)  # the run's own directions, even if older
    trainer.width = ckpt.call_width or trainer.legacy_width  # the run's own calls, even if older
    trainer.iteration = ckpt.iteration
    trainer.total_episodes = ckpt.total_episodes
    trainer.total_samples = ckpt.total_samples
    trainer.skipped_steps = ckpt.skipped_steps
    if trainer.obs_stat is not None:
        if ckpt.obs_stat is None:
            raise CheckpointError("checkpoint has no V2 observation statistics")
        trainer.set_obs_stat(ckpt.obs_stat)
    if ckpt.buffers:
        unknown = set(ckpt.buffers) - set(_buffers(trainer.models[0].module))
        if unknown:
            raise CheckpointError(f"checkpoint buffers {sorted(unknown)} are not in this model")
        for model in trainer.models:
            values = {n: torch.from_numpy(np.array(v)) for n, v in ckpt.buffers.items()}
            model.module.load_state_dict(values, strict=False)
    if ckpt.task_state:
        if not hasattr(trainer.task, "load_state_arrays"):
            raise CheckpointError(f"checkpoint holds task state {sorted(ckpt.task_state)} this task does not keep")
        try:
            trainer.task.load_state_arrays(ckpt.task_state)
        except (KeyError, ValueError) as err:
            raise CheckpointError(f"checkpoint task state does not fit this task: {err}") from None
