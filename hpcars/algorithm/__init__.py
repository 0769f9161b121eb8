"""The algorithm, free of processes and files: the counter-based noise, the ARS update rule,
batched evaluation of stacked parameter vectors, running statistics, the small models and
the search spaces, and ``AskTell`` (``hpcars.ARS``) for users who evaluate outside hpcars."""
