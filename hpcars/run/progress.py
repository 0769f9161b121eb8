"""What rank 0 prints as a run goes: the per-iteration progress line and the population's
options in the banner."""

from __future__ import annotations

from hpcars.config import TrainConfig
from hpcars.run.engine import IterationRecord


def progress_line(record: IterationRecord, unit: str) -> str:
    evals = "  ".join(f"{k} {v:.4g}" for k, v in record.eval.items() if k != "score")
    episodes = f"  episodes {record.total_episodes}" if record.total_episodes else ""
    note = f"  [step skipped: {record.skipped}]" if record.skipped else ""
    pop = record.population
    if pop is not None:
        note = (
            f"  best m{pop.best_member} fitness {pop.fitness_best:.4g} (median {pop.fitness_median:.4g})"
            + (f"  SA kept {pop.sa_accepted}/{pop.sa_judged}" if pop.sa_judged else "")
            + (f"  clones {pop.clones}" if pop.clones else "")
            + note
        )
    if record.asynchronous is not None:
        a = record.asynchronous
        note = f"  from rank {a.source}, staleness {a.staleness}" + ("  DROPPED" if a.dropped else "") + note
    if record.asynchronous is not None and record.asynchronous.source < 0:  # an asynchronous evaluation row
        return f"eval {record.iteration:5d}  {evals}{episodes}  {unit} {record.total_samples:.3g}  (θ of that update)"
    rate = record.total_samples / max(record.elapsed_s, 1e-9)
    return (
        f"iter {record.iteration:5d}  reward {record.reward_mean:11.4f} (max {record.reward_max:11.4f})  {evals}"
        f"{episodes}  {unit} {record.total_samples:.3g}  {rate:.3g} {unit}/s"
        f"  comm {record.comm_bytes} B/it{note}"
    )


def population_line(cfg: TrainConfig) -> str:
    """The population options in use, for the first line of output ("" for plain ARS)."""
    if cfg.population == 1:
        return ""
    parts = [f"  population {cfg.population}"]
    if cfg.generation_every:
        parts.append(
            f"truncation every {cfg.generation_every} (kill {cfg.kill_fraction:g}, from {cfg.clone_from}"
            + (", PBT" if cfg.pbt_perturb else "")
            + ")"
        )
    if cfg.anneal_t0:
        parts.append(f"annealing T0 {cfg.anneal_t0:g} x{cfg.anneal_cooling:g}/it")
    if cfg.swarm:
        parts.append(f"swarm w {cfg.swarm_inertia:g} c1 {cfg.swarm_cognitive:g} c2 {cfg.swarm_social:g}")
    if cfg.repulsion:
        parts.append(f"repulsion {cfg.repulsion:g} radius {cfg.repulsion_radius:g}")
    if len(parts) == 1:
        parts.append("independent lineages (no operator on)")
    return ", ".join(parts)
