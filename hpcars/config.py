"""Typed run configuration and its validation.

Every field of ``TrainConfig`` is a command-line option (``hpcars.cli.options``: ``step_size``
-> ``--step-size``, ``--help`` shows its default, TOML files use the same names) with a
*role* (result, report, run) from which the derived lists below come. ``validate``
checks everything before any work starts and raises ``ConfigError`` naming the
option and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcars.errors import ConfigError
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
class TrainConfig:
    preset: str = _report(
        "",
        "the ARS paper's settings for a MuJoCo task, TASK-pop: a population of them (swimmer-, hopper-pop: "
        "truncation + PBT; halfcheetah-pop: 2 independent lineages; docs/populations.md), or countdown "
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
    batch_size: int = _result(0, "mini-batch size of supervised tasks (0 = task default: regression 2048, digits 256)")
    hidden: int = _result(32, "hidden width of the digits MLP and of MLP policies")
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
    init_from: str = _result(
        "",
        "start from these weights: a torch state_dict file, an hpcars checkpoint, or an hpcars run directory "
        "(its best member); names and shapes must fit the task's model",
    )
    search_space: str = _result(
        "full",
        "what ARS searches: all parameters, the weights surviving magnitude pruning (--sparsity), per-layer "
        "k-means codebooks (--bits), or a random subspace through θ0 (--subspace-dim)",
        SEARCH_SPACES,
    )
    sparsity: float = _result(0.0, "pruned/shared: fraction of each weight tensor pruned (smallest |θ0|), in [0, 1)")
    bits: int = _result(0, "shared: 2^bits centroids per weight tensor, in [1, 16]")
    subspace_dim: int = _result(0, "subspace: d, the dimension of the random subspace (>= 1)")
    init_partial: bool = _result(
        False, "with --init-from: load the entries whose names and shapes fit, keep the task's init for the rest"
    )
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
    branch_memory: float = _result(
        0.0,
        "GB a rank's branches may take with --perturbation dense (in any --search-space: a compressed one counts "
        "the model parameters each branch expands to): batched calls shrink to fit, down to one pair θ ± νδ (θ "
        "never written); 0 = a quarter of the node's memory per core (of the GPU's memory on CUDA) as rank 0 sees "
        "it, recorded in the run's config. A shrunk call can move a reward's last bits, so it is part of the "
        "result. --perturbation lowrank ignores it: its branches share the weights (thin factors per branch)",
    )
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

    @property
    def top(self) -> int:
        """b, with 0 resolved to N."""
        return self.top_directions or self.directions

    @property
    def verbosity(self) -> str:
        """quiet, normal or verbose (``hpcars.run.console``)."""
        return "quiet" if self.quiet else "verbose" if self.verbose else "normal"

    @property
    def variant_name(self) -> str:
        """The paper's name: V1, V1-t, V2 or V2-t."""
        return self.variant.upper() + ("-t" if self.top < self.directions else "")


def fields_with_role(role: str) -> tuple[str, ...]:
    """Names of the ``TrainConfig`` fields with this role, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["role"] == role)


#: Options that determine the parameter trajectory; a resume must not change them.
RESULT_FIELDS = fields_with_role("result")
#: Options that say where and how to (re)start, never inherited from a checkpoint.
RUN_CONTROL_FIELDS = ("resume", "force_resume", "run_dir", "replay")


def option_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def validate(cfg: TrainConfig) -> TrainConfig:
    """Raise ``ConfigError`` for the first bad field; return ``cfg`` unchanged if all good."""

    def need(ok: bool, name: str, message: str) -> None:
        if not ok:
            value = getattr(cfg, name)
            raise ConfigError(option_name(name), f"{message} (got {value!r})")

    need(
        cfg.task in BUILTIN_TASKS or "-v" in cfg.task or ":" in cfg.task,
        "task",
        "must be regression, digits, countdown, reasoning-gym:NAME, a Gymnasium id like HalfCheetah-v5, or "
        "package.module:factory",
    )
    for name in (
        "iterations",
        "directions",
        "branch_batch",
        "devices_per_rank",
        "log_every",
        "eval_episodes",
        "prompts",
        "eval_prompts",
        "checkpoint_every",
        "keep_checkpoints",
    ):
        need(getattr(cfg, name) >= 1, name, "must be an integer >= 1")
    need(cfg.population >= 1, "population", "must be an integer >= 1")
    need(
        math.isfinite(cfg.branch_memory) and cfg.branch_memory >= 0,
        "branch_memory",
        "must be a finite number of GB >= 0 (0 = automatic)",
    )
    need(math.isfinite(cfg.format_reward) and cfg.format_reward >= 0, "format_reward", "must be a finite number >= 0")
    need(
        cfg.eval_prompts <= 2000,
        "eval_prompts",
        "must be at most 2000 (the held-out puzzles after those validate pretraining)",
    )
    language = cfg.task == "countdown" or cfg.task.startswith("reasoning-gym:")
    need(
        not cfg.hf_model or language,
        "hf_model",
        "is for --task countdown or reasoning-gym:NAME (a plug-in loads its own)",
    )
    need(cfg.prompt_pool >= 0, "prompt_pool", "must be an integer >= 0 (0: the whole training split)")
    need(cfg.max_new_tokens >= 0, "max_new_tokens", "must be an integer >= 0 (0: the task's)")
    need(math.isfinite(cfg.temperature) and cfg.temperature >= 0, "temperature", "must be a finite number >= 0")
    need(
        not cfg.task_config or cfg.task.startswith("reasoning-gym:"), "task_config", "is for --task reasoning-gym:NAME"
    )
    need(
        cfg.fitness != "group-zscore" or language,
        "fitness",
        f"group-zscore needs a language task ({', '.join(LANGUAGE_TASKS)})",
    )
    need(
        cfg.fitness == "ars" or cfg.top_directions in (0, cfg.directions),
        "top_directions",
        f"is ARS's b; --fitness {cfg.fitness} keeps every direction (leave it 0)",
    )
    need(
        cfg.fitness == "ars" or cfg.schedule != "async",
        "fitness",
        "needs --schedule static or dynamic (async applies ARS steps)",
    )
    need(not (cfg.quiet and cfg.verbose), "verbose", "not with --quiet")
    need(cfg.perturbation_rank >= 1, "perturbation_rank", "must be an integer >= 1")
    need(
        cfg.perturbation == "dense" or cfg.search_space == "full",
        "perturbation",
        f"lowrank perturbs the model's weight matrices; not with --search-space {cfg.search_space} (use full)",
    )
    for name in ("batch_size", "eval_every", "guard_every", "generation_every"):
        need(getattr(cfg, name) >= 0, name, "must be an integer >= 0")
    need(cfg.hidden >= 1, "hidden", "must be an integer >= 1")
    need(math.isfinite(cfg.priority_alpha) and cfg.priority_alpha >= 0, "priority_alpha", "must be a number >= 0")
    need(math.isfinite(cfg.priority_beta) and 0 <= cfg.priority_beta <= 1, "priority_beta", "must be in [0, 1]")
    need(cfg.priority_beta_iterations >= 1, "priority_beta_iterations", "must be an integer >= 1")
    need(math.isfinite(cfg.priority_eps) and cfg.priority_eps > 0, "priority_eps", "must be a finite number > 0")
    need(not cfg.init_partial or bool(cfg.init_from), "init_partial", "needs --init-from")
    need(cfg.max_staleness >= -1, "max_staleness", "must be an integer >= -1 (-1: keep every update)")
    need(
        cfg.schedule != "async" or cfg.population == 1,
        "schedule",
        "async needs --population 1 (the population operators judge every member at the same iteration)",
    )
    need(cfg.max_staleness == -1 or cfg.schedule == "async", "max_staleness", "only with --schedule async")
    need(
        cfg.batch_priority != "loss" or cfg.schedule != "async",
        "batch_priority",
        "loss cannot be used with --schedule async (each rank would draw batches from its own priorities); "
        "use --schedule static or dynamic, or --batch-priority uniform",
    )
    space = cfg.search_space
    need(math.isfinite(cfg.sparsity) and 0 <= cfg.sparsity < 1, "sparsity", "must be in [0, 1)")
    need(cfg.sparsity == 0 or space in ("pruned", "shared"), "sparsity", "only with --search-space pruned or shared")
    need(space != "shared" or 1 <= cfg.bits <= 16, "bits", "must be in [1, 16] with --search-space shared")
    need(cfg.bits == 0 or space == "shared", "bits", "only with --search-space shared")
    need(space != "subspace" or cfg.subspace_dim >= 1, "subspace_dim", "must be >= 1 with --search-space subspace")
    need(cfg.subspace_dim == 0 or space == "subspace", "subspace_dim", "only with --search-space subspace")
    need(0 <= cfg.seed < 2**63, "seed", "must be an integer in [0, 2**63)")
    need(0 <= cfg.top_directions <= cfg.directions, "top_directions", f"must be in [0, --directions={cfg.directions}]")
    for name in ("step_size", "noise_std"):
        value = getattr(cfg, name)
        need(math.isfinite(value) and value > 0, name, "must be a finite number > 0")
    need(math.isfinite(cfg.shift) and cfg.shift >= 0, "shift", "must be a finite number >= 0")
    need(math.isfinite(cfg.kill_fraction) and 0 <= cfg.kill_fraction < 1, "kill_fraction", "must be in [0, 1)")
    need(math.isfinite(cfg.anneal_t0) and cfg.anneal_t0 >= 0, "anneal_t0", "must be a finite number >= 0")
    need(math.isfinite(cfg.anneal_cooling) and 0 < cfg.anneal_cooling <= 1, "anneal_cooling", "must be in (0, 1]")
    need(cfg.anneal_pairs >= 1, "anneal_pairs", "must be an integer >= 1")
    need(
        not cfg.anneal_t0 or cfg.schedule != "async",
        "anneal_t0",
        "needs --schedule static or dynamic (async applies every update)",
    )
    for name in ("swarm_inertia", "swarm_cognitive", "swarm_social"):
        need(math.isfinite(getattr(cfg, name)) and getattr(cfg, name) >= 0, name, "must be a finite number >= 0")
    need(math.isfinite(cfg.repulsion) and 0 <= cfg.repulsion <= 1, "repulsion", "must be in [0, 1]")
    need(
        math.isfinite(cfg.repulsion_radius) and cfg.repulsion_radius > 0,
        "repulsion_radius",
        "must be a finite number > 0",
    )
    for name in ("generation_every", "repulsion"):
        need(cfg.population >= 2 or not getattr(cfg, name), name, "needs --population >= 2")
    need(cfg.rank_by == "reward" or cfg.population >= 2, "rank_by", "return needs --population >= 2")
    need(
        cfg.rank_by == "reward" or not cfg.anneal_t0, "rank_by", "return needs --anneal-t0 0 (annealing judges rewards)"
    )
    need(not math.isinf(cfg.target), "target", "must be a finite number or nan (none)")
    need(not cfg.stop_at_target or math.isfinite(cfg.target), "stop_at_target", "needs a --target")
    need(cfg.max_episodes >= 0, "max_episodes", "must be an integer >= 0 (0: no cap)")
    need(cfg.max_episodes == 0 or cfg.schedule != "async", "max_episodes", "needs --schedule static or dynamic")
    for f in dataclasses.fields(cfg):
        choices = f.metadata.get("choices")
        if choices and not (f.name == "preset" and cfg.preset == ""):
            need(getattr(cfg, f.name) in choices, f.name, f"must be one of {', '.join(choices)}")
    return cfg


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
