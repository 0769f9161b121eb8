"""Typed run configuration and its validation.

Every field of ``TrainConfig`` is a command-line option (``hpcars.cli.options``: ``step_size``
-> ``--step-size``, ``--help`` shows its default, TOML files use the same names) with a
*role* (result, report, run) from which the derived lists below come. The options come in
groups by concern — the run, the search, the model, supervised data, RL, the search space,
language tasks, the population — each a frozen dataclass with its own checks; ``TrainConfig``
is all of them at once, flat (``cfg.step_size``, as on the command line). ``validate`` runs
every group's checks and those that span groups before any work starts, and raises
``ConfigError`` naming the option and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcars.errors import ConfigError
from hpcars.population.restart import MODES as RESTART_MODES
from hpcars.population.truncation import CLONE_FROM, RANK_BY

SUPERVISED_TASKS = ("regression", "digits")
BUILTIN_TASKS = (*SUPERVISED_TASKS, "countdown")  # countdown: a language model judged by a verifier
VARIANTS = ("v1", "v2")
POLICIES = ("linear", "mlp")
NONFINITE_POLICIES = ("skip", "fail")
REWARDS = ("loss", "metric")
SEARCH_SPACES = ("full", "pruned", "shared", "subspace")
SCHEDULES = ("static", "dynamic", "async")
LOGS = ("none", "tensorboard")
BATCH_PRIORITIES = ("uniform", "loss")
EVAL_SPLITS = ("test", "validation")  # countdown's held-out puzzles: reported, or for tuning
ENV_BACKENDS = ("gymnasium", "envpool")
PERTURBATIONS = ("dense", "lowrank")  # hpcars.algorithm.perturbation
FITNESS = ("ars", "zscore", "group-zscore")  # hpcars.algorithm.fitness
CHAT_TEMPLATES = ("auto", "none")  # hpcars.tasks.hf_lm
LANGUAGE_TASKS = ("countdown", "reasoning-gym:NAME")
PRESET_DIR = Path(__file__).parent / "presets"
PRESETS = tuple(sorted(p.stem for p in PRESET_DIR.glob("*.toml")))


#: What an option is about (``field.metadata["role"]``); derived lists below use it.
#: result — the parameter trajectory depends on it: a resume must not change it, and
#:          runs of a sweep that differ in it are different settings;
#: report — what is measured or announced, not what is trained (evaluation, target);
#: run    — where, how and how long a run executes (never a setting of a sweep).
ROLES = ("result", "report", "run")


def _opt(role: str, default: Any, help: str, choices: Sequence[str] | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices, "role": role})


def _result(default: Any, help: str, choices: Sequence[str] | None = None) -> Any:
    return _opt("result", default, help, choices)


def _report(default: Any, help: str, choices: Sequence[str] | None = None) -> Any:
    return _opt("report", default, help, choices)


def _run(default: Any, help: str, choices: Sequence[str] | None = None) -> Any:
    return _opt("run", default, help, choices)


@dataclass(frozen=True)
class RunSettings:
    """What is trained, for how long, where, and what it says and writes."""

    preset: str = _report(
        "",
        "the ARS paper's settings for a MuJoCo task, TASK-pop: a population of them (swimmer-, hopper-pop: "
        "truncation + PBT; halfcheetah-pop: 2 independent lineages; docs/populations.md), hopper-restart (restarts "
        "on a stall), or countdown "
        "(post-training a language model on a verifier reward); the config file and command line override it",
        PRESETS,
    )
    task: str = _result(
        "regression",
        "regression, digits, countdown (a language model answering Countdown puzzles, rewarded by a verifier), "
        "reasoning-gym:NAME (a reasoning-gym dataset and its scorer, with --hf-model), a Gymnasium id (e.g. "
        "HalfCheetah-v5; mypackage.envs:MyEnv-v0 imports the module that registers it), or your own task as "
        "package.module:factory (a SupervisedProblem, an Objective or a Task)",
    )
    iterations: int = _run(1000, "ARS iterations to run")
    seed: int = _result(0, "run seed: noise, data and initialisation all derive from it")
    target: float = _report(
        float("nan"), "announce when the evaluation score reaches this (RL: mean return); nan = none"
    )
    stop_at_target: bool = _run(False, "stop once --target is reached")
    quiet: bool = _run(False, "print warnings and errors only (no banner, progress or summary lines)")
    verbose: bool = _run(False, "also print every rank's set-up (its devices, its task), prefixed [rank R/K]")
    max_episodes: int = _run(
        0,
        "RL: stop before an iteration would take the training episodes (all members', annealing's judge "
        "included) past this budget (0 = no cap)",
    )
    run_dir: str = _run("", "output directory (empty = runs/TASK-seedSEED-NNN, the next free NNN)")
    device: str = _run("auto", "auto (a GPU per node-local rank if any, else CPU), cpu, cuda, or a list cuda:0,cuda:1")
    devices_per_rank: int = _run(1, "with auto/cuda: how many GPUs each rank drives")
    eval_every: int = _report(10, "evaluate the unperturbed model every this many iterations (0 = only at the end)")
    log: str = _run(
        "none", "also write the metrics as TensorBoard event files in RUN_DIR/tensorboard (rank 0, live)", LOGS
    )
    log_every: int = _run(50, "print progress every this many iterations")
    guard_every: int = _run(10, "compare a parameter checksum across ranks every this many iterations (0 = never)")
    on_nonfinite: str = _report("skip", "a NaN/inf reward: skip the step and log it, or fail", NONFINITE_POLICIES)
    checkpoint_every: int = _run(
        10, "write a checkpoint every this many iterations (and at the end, and on a stop signal)"
    )
    keep_checkpoints: int = _run(3, "how many of the newest checkpoints to keep")
    resume: str = _run(
        "",
        "continue the run in this directory from its latest checkpoint (options not given "
        "are taken from it; --iterations is the total)",
    )
    replay: str = _run(
        "",
        "re-apply an asynchronous run's update log (from its latest checkpoint) to θ0 on this world size and "
        "check that it reproduces the run's parameters; trains nothing",
    )
    force_resume: bool = _run(False, "resume even if result-affecting options differ from the checkpoint's")

    def _check_run(self) -> None:
        _need(
            self,
            self.task in BUILTIN_TASKS or "-v" in self.task or ":" in self.task,
            "task",
            "must be regression, digits, countdown, reasoning-gym:NAME, a Gymnasium id like HalfCheetah-v5, or "
            "package.module:factory",
        )
        for name in ("iterations", "devices_per_rank", "log_every", "checkpoint_every", "keep_checkpoints"):
            _need(self, getattr(self, name) >= 1, name, "must be an integer >= 1")
        for name in ("eval_every", "guard_every"):
            _need(self, getattr(self, name) >= 0, name, "must be an integer >= 0")
        _need(self, not (self.quiet and self.verbose), "verbose", "not with --quiet")
        _need(self, 0 <= self.seed < 2**63, "seed", "must be an integer in [0, 2**63)")
        _need(self, not math.isinf(self.target), "target", "must be a finite number or nan (none)")
        _need(self, not self.stop_at_target or math.isfinite(self.target), "stop_at_target", "needs a --target")
        _need(self, self.max_episodes >= 0, "max_episodes", "must be an integer >= 0 (0: no cap)")

    @property
    def verbosity(self) -> str:
        """quiet, normal or verbose (``hpcars.run.console``)."""
        return "quiet" if self.quiet else "verbose" if self.verbose else "normal"


@dataclass(frozen=True)
class ARSSettings:
    """The search itself: N, b, α, ν, the perturbation, fitness shaping and how branches are scheduled."""

    directions: int = _result(32, "N, perturbation directions per iteration (2N branches)")
    top_directions: int = _result(0, "b, directions kept for the update (0 = all N: V1/V2; b < N: V1-t/V2-t)")
    fitness: str = _result(
        "ars",
        "how rewards become the step: ars (Algorithm 2: top b, scaled by σ_R), zscore (each branch's z-score across "
        "the member's 2N, Qiu et al. 2025), group-zscore (z-scored per prompt across the branches, then averaged: "
        "EGGROLL; language tasks)",
        FITNESS,
    )
    step_size: float = _result(0.02, "α, the step size")
    noise_std: float = _result(0.03, "ν, the standard deviation of the exploration noise")
    perturbation: str = _result(
        "dense",
        "dense: one normal per parameter; lowrank: each weight matrix perturbed by a rank-R product A Bᵀ/√R "
        "on shared weights (biases and norms dense; docs/large-models.md)",
        PERTURBATIONS,
    )
    perturbation_rank: int = _result(1, "R, the rank of --perturbation lowrank")
    check_perturbation: bool = _report(
        False,
        "before training, compare the batched branches with explicit per-branch weights on the task's example "
        "inputs (hpcars.check_perturbation), print the largest deviation per output and refuse if one is not exact",
    )
    variant: str = _result("v1", "v2 normalises model inputs by running statistics of those seen in training", VARIANTS)
    branch_memory: float = _result(
        0.0,
        "GB a rank's branches may take with --perturbation dense (in any --search-space: a compressed one counts "
        "the model parameters each branch expands to): batched calls shrink to fit, down to one pair θ ± νδ (θ "
        "never written); 0 = a quarter of the node's memory per core (of the GPU's memory on CUDA) as rank 0 sees "
        "it, recorded in the run's config. A shrunk call can move a reward's last bits, so it is part of the "
        "result. --perturbation lowrank ignores it: its branches share the weights (thin factors per branch)",
    )
    schedule: str = _result(
        "static",
        "static: fixed contiguous shares of the branches; dynamic: chunks claimed from a shared counter (fast ranks "
        "take more; bitwise the same parameters); async: every rank scores and publishes whole updates at its own "
        "pace, applied in an order rank 0 sets (replayable from the log)",
        SCHEDULES,
    )
    max_staleness: int = _result(
        -1, "async: drop an update scored more than this many updates before it is applied (-1 = keep all)"
    )
    branch_batch: int = _result(
        64,
        "branches per batched call at most: calls are min(this, the iteration's 2N·M branches rounded up to a power "
        "of two) wide on every rank (a short call is padded), so results do not depend on the world size",
    )

    def _check_ars(self) -> None:
        for name in ("directions", "branch_batch"):
            _need(self, getattr(self, name) >= 1, name, "must be an integer >= 1")
        _need(
            self,
            0 <= self.top_directions <= self.directions,
            "top_directions",
            f"must be in [0, --directions={self.directions}]",
        )
        for name in ("step_size", "noise_std"):
            _need(
                self,
                math.isfinite(getattr(self, name)) and getattr(self, name) > 0,
                name,
                "must be a finite number > 0",
            )
        _need(
            self,
            self.fitness == "ars" or self.top_directions in (0, self.directions),
            "top_directions",
            f"is ARS's b; --fitness {self.fitness} keeps every direction (leave it 0)",
        )
        _need(self, self.perturbation_rank >= 1, "perturbation_rank", "must be an integer >= 1")
        _need(
            self,
            math.isfinite(self.branch_memory) and self.branch_memory >= 0,
            "branch_memory",
            "must be a finite number of GB >= 0 (0 = automatic)",
        )
        _need(self, self.max_staleness >= -1, "max_staleness", "must be an integer >= -1 (-1: keep every update)")
        _need(self, self.max_staleness == -1 or self.schedule == "async", "max_staleness", "only with --schedule async")
        _need(
            self,
            self.fitness == "ars" or self.schedule != "async",
            "fitness",
            "needs --schedule static or dynamic (async applies ARS steps)",
        )

    @property
    def top(self) -> int:
        """b, with 0 resolved to N."""
        return self.top_directions or self.directions

    @property
    def variant_name(self) -> str:
        """The paper's name: V1, V1-t, V2 or V2-t."""
        return self.variant.upper() + ("-t" if self.top < self.directions else "")


@dataclass(frozen=True)
class ModelSettings:
    """The model's shape and where θ₀ comes from."""

    hidden: int = _result(32, "hidden width of the digits MLP and of MLP policies")
    init_from: str = _result(
        "",
        "start from these weights: a torch state_dict file, an hpcars checkpoint, or an hpcars run directory "
        "(its best member); names and shapes must fit the task's model",
    )
    init_partial: bool = _result(
        False, "with --init-from: load the entries whose names and shapes fit, keep the task's init for the rest"
    )

    def _check_model(self) -> None:
        _need(self, self.hidden >= 1, "hidden", "must be an integer >= 1")
        _need(self, not self.init_partial or bool(self.init_from), "init_partial", "needs --init-from")


@dataclass(frozen=True)
class DataSettings:
    """Supervised tasks: mini-batches, their priorities, and what the reward is."""

    batch_size: int = _result(0, "mini-batch size of supervised tasks (0 = task default: regression 2048, digits 256)")
    reward: str = _result(
        "loss", "supervised: the reward is -loss on the mini-batch, or the task's metric (e.g. accuracy)", REWARDS
    )
    batch_priority: str = _result(
        "uniform",
        "supervised: draw mini-batches uniformly, or by priority |loss|+eps as in prioritized experience replay",
        BATCH_PRIORITIES,
    )
    priority_alpha: float = _result(0.6, "prioritized batches: P(i) ∝ priority^alpha (0 = uniform)")
    priority_beta: float = _result(0.4, "prioritized batches: importance-sampling exponent at iteration 0, grows to 1")
    priority_beta_iterations: int = _result(1000, "prioritized batches: iterations over which beta grows to 1")
    priority_eps: float = _result(1e-6, "prioritized batches: added to |loss| so that every sample stays drawable")

    def _check_data(self) -> None:
        _need(self, self.batch_size >= 0, "batch_size", "must be an integer >= 0")
        _need(
            self,
            math.isfinite(self.priority_alpha) and self.priority_alpha >= 0,
            "priority_alpha",
            "must be a number >= 0",
        )
        _need(
            self,
            math.isfinite(self.priority_beta) and 0 <= self.priority_beta <= 1,
            "priority_beta",
            "must be in [0, 1]",
        )
        _need(self, self.priority_beta_iterations >= 1, "priority_beta_iterations", "must be an integer >= 1")
        _need(
            self,
            math.isfinite(self.priority_eps) and self.priority_eps > 0,
            "priority_eps",
            "must be a finite number > 0",
        )


@dataclass(frozen=True)
class RLSettings:
    """Reinforcement learning: the policy, the environments, the evaluation's episodes."""

    policy: str = _result(
        "linear", "RL policy: linear (zero-initialised, no bias, as in the paper) or a tanh MLP", POLICIES
    )
    shift: float = _result(
        0.0, "RL: subtracted from every step's reward in training (survival bonus); not in evaluation"
    )
    clip_actions: bool = _result(
        True,
        "RL: clip Box actions to the action bounds; false passes them raw, as the authors' code does "
        "(MuJoCo clamps the control, but v5 charges the control cost on the raw action)",
    )
    env_backend: str = _result(
        "gymnasium",
        "RL: who steps the envs: Gymnasium, or EnvPool's C++ v5 MuJoCo tasks (pip install 'hpcars[envpool]'); "
        "the two draw different episodes for the same seed",
        ENV_BACKENDS,
    )
    eval_episodes: int = _report(100, "RL: episodes per evaluation, split across ranks")

    def _check_rl(self) -> None:
        _need(self, self.eval_episodes >= 1, "eval_episodes", "must be an integer >= 1")
        _need(self, math.isfinite(self.shift) and self.shift >= 0, "shift", "must be a finite number >= 0")


@dataclass(frozen=True)
class SpaceSettings:
    """What ARS searches: all parameters or a compressed space."""

    search_space: str = _result(
        "full",
        "what ARS searches: all parameters, the weights surviving magnitude pruning (--sparsity), per-layer "
        "k-means codebooks (--bits), or a random subspace through θ0 (--subspace-dim)",
        SEARCH_SPACES,
    )
    sparsity: float = _result(0.0, "pruned/shared: fraction of each weight tensor pruned (smallest |θ0|), in [0, 1)")
    bits: int = _result(0, "shared: 2^bits centroids per weight tensor, in [1, 16]")
    subspace_dim: int = _result(0, "subspace: d, the dimension of the random subspace (>= 1)")

    def _check_space(self) -> None:
        space = self.search_space
        _need(self, math.isfinite(self.sparsity) and 0 <= self.sparsity < 1, "sparsity", "must be in [0, 1)")
        _need(
            self,
            self.sparsity == 0 or space in ("pruned", "shared"),
            "sparsity",
            "only with --search-space pruned or shared",
        )
        _need(self, space != "shared" or 1 <= self.bits <= 16, "bits", "must be in [1, 16] with --search-space shared")
        _need(self, self.bits == 0 or space == "shared", "bits", "only with --search-space shared")
        _need(
            self,
            space != "subspace" or self.subspace_dim >= 1,
            "subspace_dim",
            "must be >= 1 with --search-space subspace",
        )
        _need(self, self.subspace_dim == 0 or space == "subspace", "subspace_dim", "only with --search-space subspace")


@dataclass(frozen=True)
class LanguageSettings:
    """Language tasks: prompts, the model, decoding and the held-out prompts."""

    prompts: int = _result(16, "language tasks: prompts per iteration, the same for every branch")
    prompt_pool: int = _result(
        0,
        "language tasks: draw each iteration's prompts from a fixed pool of the first K training prompts (--prompts K "
        "--prompt-pool K: every branch scores the same K every iteration, as Qiu et al.); 0 = the whole training split",
    )
    eval_prompts: int = _report(500, "language tasks: held-out prompts per evaluation (at most 2000)")
    eval_split: str = _report(
        "test",
        "language tasks: the held-out prompts scored: test (report with these) or validation (tune with these)",
        EVAL_SPLITS,
    )
    hf_model: str = _result(
        "",
        "language tasks: a Hugging Face causal LM instead of the built-in model: a save_pretrained directory "
        "(tokenizer included), a GGUF file, or a directory holding one; nothing is downloaded (pip install "
        "'hpcars[llm]')",
    )
    chat_template: str = _result(
        "auto",
        "--hf-model: auto feeds each prompt through the tokenizer's chat template as the user's message when it has "
        "one (instruct models); none feeds the prompt's text as it is",
        CHAT_TEMPLATES,
    )
    task_config: str = _result(
        "", "reasoning-gym: the dataset's options as KEY=VALUE[,KEY=VALUE...] (e.g. min_digits=2,max_digits=2)"
    )
    max_new_tokens: int = _result(
        0, "language tasks: tokens an answer may take before it ends (0 = the task's: countdown 12, reasoning-gym 32)"
    )
    temperature: float = _result(
        0.0,
        "language tasks: sample training answers at this temperature, with noise every branch of an iteration "
        "shares (0 = greedy; evaluations are always greedy)",
    )
    format_reward: float = _result(
        0.0,
        "language tasks: reward added per well-formed answer, right or not (countdown: an expression over the given "
        "numbers; reasoning-gym: an answer the extraction rule found)",
    )

    def _check_language(self) -> None:
        for name in ("prompts", "eval_prompts"):
            _need(self, getattr(self, name) >= 1, name, "must be an integer >= 1")
        _need(
            self,
            self.eval_prompts <= 2000,
            "eval_prompts",
            "must be at most 2000 (the held-out puzzles after those validate pretraining)",
        )
        _need(
            self,
            math.isfinite(self.format_reward) and self.format_reward >= 0,
            "format_reward",
            "must be a finite number >= 0",
        )
        _need(self, self.prompt_pool >= 0, "prompt_pool", "must be an integer >= 0 (0: the whole training split)")
        _need(self, self.max_new_tokens >= 0, "max_new_tokens", "must be an integer >= 0 (0: the task's)")
        _need(
            self,
            math.isfinite(self.temperature) and self.temperature >= 0,
            "temperature",
            "must be a finite number >= 0",
        )


@dataclass(frozen=True)
class PopulationSettings:
    """A population: truncation, annealing, swarm and repulsion."""

    population: int = _result(
        1, "M, members trained side by side, each with N directions (2N·M branches per iteration); 1 = plain ARS"
    )
    generation_every: int = _result(
        0, "truncation: every this many iterations replace the worst members by clones (0 = off)"
    )
    kill_fraction: float = _result(0.5, "truncation: fraction of the population replaced per generation")
    clone_from: str = _result(
        "best", "truncation: a clone copies the best member, or a survivor drawn at random", CLONE_FROM
    )
    rank_by: str = _result(
        "reward",
        "what members are ranked on (truncation, the member evaluated, the swarm's bests): the training reward ARS "
        "climbs (RL: --shift per step taken off), or the return with the shift given back (what --target judges)",
        RANK_BY,
    )
    pbt_perturb: bool = _result(False, "truncation: multiply each clone's α and ν by 0.8 or 1.2 (PBT explore)")
    anneal_t0: float = _result(
        0.0,
        "simulated annealing: initial temperature, in reward standard deviations; a "
        "worsening step of Δ is kept with probability exp(-Δ/T) (0 = off)",
    )
    anneal_cooling: float = _result(0.99, "simulated annealing: T = anneal_t0 * anneal_cooling**iteration")
    anneal_pairs: int = _result(
        1,
        "simulated annealing: J, pairs of evaluations per member and iteration that judge a step, old and new "
        "parameters on the same mini-batch / episode seeds (2J training episodes per member and iteration in RL)",
    )
    swarm: bool = _result(False, "particle swarm: v = w v + ARS step + c1 r1 (personal best - θ) + c2 r2 (best - θ)")
    swarm_inertia: float = _result(0.5, "particle swarm: w")
    swarm_cognitive: float = _result(0.1, "particle swarm: c1, pull to the member's personal best")
    swarm_social: float = _result(0.1, "particle swarm: c2, pull to the population's best")
    repulsion: float = _result(
        0.0, "tabu-like repulsion: strength in [0, 1] of the push out of the ball around the best member (0 = off)"
    )
    repulsion_radius: float = _result(
        0.1, "repulsion: radius of that ball, as a fraction of the best member's distance from the start θ0"
    )

    def _check_population(self) -> None:
        _need(self, self.population >= 1, "population", "must be an integer >= 1")
        _need(self, self.generation_every >= 0, "generation_every", "must be an integer >= 0")
        _need(
            self,
            math.isfinite(self.kill_fraction) and 0 <= self.kill_fraction < 1,
            "kill_fraction",
            "must be in [0, 1)",
        )
        _need(self, math.isfinite(self.anneal_t0) and self.anneal_t0 >= 0, "anneal_t0", "must be a finite number >= 0")
        _need(
            self,
            math.isfinite(self.anneal_cooling) and 0 < self.anneal_cooling <= 1,
            "anneal_cooling",
            "must be in (0, 1]",
        )
        _need(self, self.anneal_pairs >= 1, "anneal_pairs", "must be an integer >= 1")
        for name in ("swarm_inertia", "swarm_cognitive", "swarm_social"):
            value = getattr(self, name)
            _need(self, math.isfinite(value) and value >= 0, name, "must be a finite number >= 0")
        _need(self, math.isfinite(self.repulsion) and 0 <= self.repulsion <= 1, "repulsion", "must be in [0, 1]")
        _need(
            self,
            math.isfinite(self.repulsion_radius) and self.repulsion_radius > 0,
            "repulsion_radius",
            "must be a finite number > 0",
        )
        for name in ("generation_every", "repulsion"):
            _need(self, self.population >= 2 or not getattr(self, name), name, "needs --population >= 2")
        _need(self, self.rank_by == "reward" or self.population >= 2, "rank_by", "return needs --population >= 2")
        _need(
            self,
            self.rank_by == "reward" or not self.anneal_t0,
            "rank_by",
            "return needs --anneal-t0 0 (annealing judges rewards)",
        )


@dataclass(frozen=True)
class RestartSettings:
    """Restarts on a stall (``hpcars.population.restart``): judged on the evaluations."""

    restart: str = _result(
        "none",
        "on a stall start over: every member back at the initial point (fresh) or at the highest evaluation since "
        "the last start (best), the population's search state reset, the episodes still counted",
        RESTART_MODES,
    )
    restart_patience: int = _result(
        100, "a stall: this many iterations since the best evaluation last rose by more than --restart-min-gain"
    )
    restart_min_gain: float = _result(0.0, "how much the best evaluation must rise to count as progress")
    restarts: int = _result(1, "at most this many restarts in a run")

    def _check_restart(self) -> None:
        _need(self, self.restart_patience >= 1, "restart_patience", "must be an integer >= 1")
        _need(
            self,
            math.isfinite(self.restart_min_gain) and self.restart_min_gain >= 0,
            "restart_min_gain",
            "must be a finite number >= 0",
        )
        _need(self, self.restarts >= 0, "restarts", "must be an integer >= 0")


@dataclass(frozen=True)
class TrainConfig(
    RestartSettings,
    PopulationSettings,
    LanguageSettings,
    SpaceSettings,
    RLSettings,
    DataSettings,
    ModelSettings,
    ARSSettings,
    RunSettings,
):
    """Every option of a run, flat; its fields come in the groups' order, the run's first."""


def fields_with_role(role: str) -> tuple[str, ...]:
    """Names of the ``TrainConfig`` fields with this role, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["role"] == role)


#: Options that determine the parameter trajectory; a resume must not change them.
RESULT_FIELDS = fields_with_role("result")
#: Options that say where and how to (re)start, never inherited from a checkpoint.
RUN_CONTROL_FIELDS = ("resume", "force_resume", "run_dir", "replay")


def option_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _need(cfg: Any, ok: bool, name: str, message: str) -> None:
    """``ConfigError`` naming ``--name``, what is allowed and the value given, unless ``ok``."""
    if not ok:
        raise ConfigError(option_name(name), f"{message} (got {getattr(cfg, name)!r})")


#: every group's checks, in the order they run
GROUP_CHECKS = (
    RunSettings._check_run,
    ARSSettings._check_ars,
    ModelSettings._check_model,
    DataSettings._check_data,
    RLSettings._check_rl,
    SpaceSettings._check_space,
    LanguageSettings._check_language,
    PopulationSettings._check_population,
    RestartSettings._check_restart,
)


def _check_across(cfg: TrainConfig) -> None:
    """What no group can check alone: options that only fit some tasks, schedules or spaces."""
    language = cfg.task == "countdown" or cfg.task.startswith("reasoning-gym:")
    _need(
        cfg,
        not cfg.hf_model or language,
        "hf_model",
        "is for --task countdown or reasoning-gym:NAME (a plug-in loads its own)",
    )
    _need(
        cfg,
        not cfg.task_config or cfg.task.startswith("reasoning-gym:"),
        "task_config",
        "is for --task reasoning-gym:NAME",
    )
    _need(
        cfg,
        cfg.fitness != "group-zscore" or language,
        "fitness",
        f"group-zscore needs a language task ({', '.join(LANGUAGE_TASKS)})",
    )
    _need(
        cfg,
        cfg.perturbation == "dense" or cfg.search_space == "full",
        "perturbation",
        f"lowrank perturbs the model's weight matrices; not with --search-space {cfg.search_space} (use full)",
    )
    _need(
        cfg,
        cfg.schedule != "async" or cfg.population == 1,
        "schedule",
        "async needs --population 1 (the population operators judge every member at the same iteration)",
    )
    _need(
        cfg,
        cfg.batch_priority != "loss" or cfg.schedule != "async",
        "batch_priority",
        "loss cannot be used with --schedule async (each rank would draw batches from its own priorities); "
        "use --schedule static or dynamic, or --batch-priority uniform",
    )
    _need(
        cfg,
        not cfg.anneal_t0 or cfg.schedule != "async",
        "anneal_t0",
        "needs --schedule static or dynamic (async applies every update)",
    )
    _need(cfg, cfg.max_episodes == 0 or cfg.schedule != "async", "max_episodes", "needs --schedule static or dynamic")
    _need(cfg, cfg.restart == "none" or cfg.schedule != "async", "restart", "needs --schedule static or dynamic")
    _need(
        cfg,
        cfg.restart == "none" or cfg.eval_every > 0,
        "restart",
        "needs evaluations to judge a stall on (--eval-every >= 1)",
    )


def validate(cfg: TrainConfig) -> TrainConfig:
    """Raise ``ConfigError`` for the first bad field; return ``cfg`` unchanged if all good."""
    for check in GROUP_CHECKS:
        check(cfg)
    _check_across(cfg)
    for f in dataclasses.fields(cfg):
        choices = f.metadata.get("choices")
        if choices and not (f.name == "preset" and cfg.preset == ""):
            _need(cfg, getattr(cfg, f.name) in choices, f.name, f"must be one of {', '.join(choices)}")
    return cfg


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
