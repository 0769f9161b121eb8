"""Task registry: ``--task NAME`` -> a task object.

``regression`` and ``digits`` are built in; ``package.module:factory`` is a plug-in
(``hpcars.tasks.plugin``); anything else is a Gymnasium id (``module:Env-v0``
imports ``module`` first, so that it can register the env).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from hpcars.config import TrainConfig
from hpcars.errors import ConfigError
from hpcars.tasks.base import BranchOutcome, ObsMoments, Task

#: how ``cfg.task`` names a task that ``hpcars.fit`` was given as an object (it has no importable name)
IN_MEMORY = "memory:"
#: ``--task reasoning-gym:NAME``: a reasoning-gym dataset (``hpcars.tasks.reasoning_gym``)
REASONING_GYM = "reasoning-gym:"

#: what builds a run's task from its config: ``make_task``, or ``hpcars.fit``'s own for an object in memory
TaskSource = Callable[[TrainConfig], Task]


def _supervised_only(cfg: TrainConfig, why: str) -> None:
    """Refuse the supervised-only options for a task that cannot honour them."""
    if cfg.reward != "loss":
        raise ConfigError("--reward", f"metric needs a task with a metric; {cfg.task} has none (use loss)")
    if cfg.batch_priority != "uniform":
        raise ConfigError("--batch-priority", f"loss needs a finite training set; {why}")


def make_task(cfg: TrainConfig) -> Task:
    """The task ``cfg.task`` names; an unknown one is a ``ConfigError``."""
    from hpcars.tasks.plugin import is_plugin, make_plugin_task, problem_task
    from hpcars.tasks.supervised import Regression, digits_problem

    language = cfg.task == "countdown" or cfg.task.startswith(REASONING_GYM)
    if cfg.env_backend != "gymnasium" and (cfg.task in ("regression", "digits") or language or is_plugin(cfg.task)):
        raise ConfigError("--env-backend", f"{cfg.env_backend} steps Gymnasium ids; {cfg.task} is not one")
    if cfg.task == "regression":
        _supervised_only(cfg, "regression draws fresh samples every iteration")
        return Regression(cfg.seed, cfg.batch_size or 2048, cfg.variant == "v2")
    if cfg.task == "digits":
        return problem_task(digits_problem(cfg.seed, cfg.hidden), cfg)
    if language:
        return _language_task(cfg)
    if cfg.task.startswith(IN_MEMORY):
        raise ConfigError("--task", f"{cfg.task} was an object given to hpcars.fit: give it to hpcars.fit again")
    if is_plugin(cfg.task):
        return make_plugin_task(cfg)
    _supervised_only(cfg, f"{cfg.task} is a reinforcement-learning task")
    return _gym_task(cfg)


def _language_task(cfg: TrainConfig) -> Task:
    """``countdown`` or ``reasoning-gym:NAME``: a language model judged by a verifier
    (``hpcars.tasks.language``), on the built-in character model or ``--hf-model``'s."""
    from hpcars.tasks.language import LanguageOptions, LanguageTask, PromptSource
    from hpcars.tasks.verifier import CharCodec, CountdownPrompts, build_model

    what = "countdown" if cfg.task == "countdown" else "reasoning-gym"
    _supervised_only(cfg, f"{what} draws its prompts from its own training split")
    if cfg.variant != "v1":
        raise ConfigError("--variant", f"{what}'s inputs are tokens: v2's input normaliser does not apply (use v1)")
    source: PromptSource = CountdownPrompts()
    if cfg.task.startswith(REASONING_GYM):
        from hpcars.tasks.reasoning_gym import ReasoningGymPrompts, parse_config

        if not cfg.hf_model:
            raise ConfigError("--task", f"{cfg.task} needs --hf-model (a tokenizer for its prompts)")
        source = ReasoningGymPrompts(cfg.task[len(REASONING_GYM) :], parse_config(cfg.task_config))
    options = LanguageOptions(
        seed=cfg.seed,
        prompts=cfg.prompts,
        eval_prompts=cfg.eval_prompts,
        eval_split=cfg.eval_split,
        format_reward=cfg.format_reward,
        prompt_pool=cfg.prompt_pool,
        temperature=cfg.temperature,
        max_new_tokens=cfg.max_new_tokens,
        groups=cfg.fitness == "group-zscore",
    )
    if not cfg.hf_model:
        return LanguageTask(what, source, CharCodec(), lambda: build_model(cfg.seed), options)
    from hpcars.tasks import hf_lm

    files = hf_lm.locate(cfg.hf_model)
    codec = hf_lm.TokenizerCodec(hf_lm.load_tokenizer(files), cfg.chat_template)
    provenance = {"model_file": files.path, "model_sha256": files.sha256()}
    return LanguageTask(
        what, source, codec, lambda: hf_lm.CausalLM(hf_lm.load_model(files), codec.pad_id), options, provenance
    )


def _gym_task(cfg: TrainConfig) -> Task:
    from hpcars.tasks.envs import gym_ids
    from hpcars.tasks.rl import GymTask

    module, _, env_id = cfg.task.rpartition(":")  # Gymnasium's "module:Env-v0": import, then make
    if module:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError("--task", f"cannot import {module!r} to register {env_id}: {err}") from None
    ids = gym_ids()
    if not ids:
        raise ConfigError("--task", f"{cfg.task} needs Gymnasium: pip install 'hpcars[rl]'")
    if env_id not in ids:
        close = [i for i in ids if i.split("-")[0].lower() == env_id.split("-")[0].lower()]
        hint = f"; registered versions: {', '.join(close)}" if close else ""
        raise ConfigError("--task", f"{env_id!r} is not a registered Gymnasium id{hint}")
    return GymTask(
        env_id,
        cfg.seed,
        policy=cfg.policy,
        hidden=cfg.hidden,
        shift=cfg.shift,
        eval_episodes=cfg.eval_episodes,
        branch_batch=cfg.branch_batch,
        track_obs=cfg.variant == "v2",
        env_backend=cfg.env_backend,
        clip_actions=cfg.clip_actions,
    )


__all__ = ["BranchOutcome", "ObsMoments", "Task", "TaskSource", "make_task"]
