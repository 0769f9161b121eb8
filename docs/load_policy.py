"""Load a policy exported by `python -m hpcars.export RUN --format npz` with NumPy alone."""

import numpy as np


def load_policy(path):
    p = np.load(path)
    layers, acts = int(p["layers"]), [str(a) for a in p["activations"]]
    weights = [(p[f"W{i}"], p[f"b{i}"]) for i in range(layers)]

    def act(obs):  # one observation [d] or a batch [B, d]
        x = (np.asarray(obs, np.float32) - p["mean"]) * p["inv_std"]
        for (w, b), a in zip(weights, acts, strict=True):
            x = x @ w.T + b
            x = np.tanh(x) if a == "tanh" else np.maximum(x, 0) if a == "relu" else x
        if p["discrete"]:
            return np.argmax(x, axis=-1)
        return np.clip(x, p["low"], p["high"]) if p["low"].size else x

    return act
