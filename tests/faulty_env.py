"""A Gymnasium env that raises on MPI rank 1 after a few steps: one rank failing mid-run."""

import os

import gymnasium
import numpy as np


class Faulty(gymnasium.Env):
    observation_space = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float64)
    action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self):
        self.steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2), {}

    def step(self, action):
        self.steps += 1
        if os.environ.get("PMI_RANK") == "1" and self.steps > 200:
            raise RuntimeError("simulated env failure")
        return np.zeros(2), float(action[0]), False, False, {}


gymnasium.register(id="Faulty-v0", entry_point=Faulty, max_episode_steps=20)
