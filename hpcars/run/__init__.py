"""A training run: the engine's iteration, the session that owns a run directory,
checkpoints and their history, output files and lines, signals, and the Slurm job."""
