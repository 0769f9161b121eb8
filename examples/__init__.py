"""Plug-in task examples: ``--task examples.wine:problem``, ``--task examples.rastrigin:objective``."""
