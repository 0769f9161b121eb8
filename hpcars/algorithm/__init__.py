"""The algorithm, free of processes and files: the counter-based noise, the ARS rule and the one
path from rewards to Δθ that every loop uses (``update``), batched evaluation of stacked
parameter vectors and their perturbation kinds, running statistics, the small models, the
search spaces, and the ask/tell strategy ``ARS`` (``hpcars.ARS``) for users who evaluate
outside hpcars."""
