"""The command-line tools: ``train``, ``inspect``, ``play``, ``export`` (and their options);
``sweep`` and ``report`` live in ``hpcars.jobs`` and ``hpcars.analysis``. Each ``main``
pins the thread pools before torch is imported (``hpcars.threads``)."""
