"""``python -m hpcars.play RUN_DIR_OR_CHECKPOINT``: run a trained policy, and watch it.

    python -m hpcars.play runs/HalfCheetah-v5-seed0-001                      # the best policy, the run's seeds
    python -m hpcars.play RUN --which last --episodes 20 --seed 7
    MUJOCO_GL=egl python -m hpcars.play RUN --video cheetah.gif --video-steps 300 --video-every 2
    mpirun -n 4 python -m hpcars.play RUN --episodes 400                     # episodes split over the ranks

Runs the policy without noise and prints the mean, std, min and max return and the
episode lengths (RL), or the held-out metrics (supervised). Episode e uses the seed
the run's evaluation at the policy's iteration gave its episode e, so with the run's
seed (the default) the returns are exactly those the run logged there.

``--video out.gif|out.mp4`` renders ``--video-episodes`` episodes (rank 0 only) with
MuJoCo's offscreen renderer; headless machines need EGL (Debian: ``apt-get install
libegl1 libegl-mesa0``; ``MUJOCO_GL=egl``, the default here) or OSMesa (``libosmesa6``,
``MUJOCO_GL=osmesa``). GIFs are written with Pillow; MP4 needs ``imageio-ffmpeg``
(``pip install 'hpcars[video]'``). Bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np
import torch

from hpcars.config import ENV_BACKENDS
from hpcars.errors import CheckpointError, ConfigError
from hpcars.run.policy import WHICH, LoadedPolicy, load_policy
from hpcars.runtime.comm import make_transport, partition, shares
from hpcars.tasks.rl import GymTask
from hpcars.threads import pin_threads


def evaluate(policy: LoadedPolicy, episodes: int, transport) -> np.ndarray:
    """All ranks: the evaluation rows of ``episodes`` units, split across ranks, in unit order."""
    task = policy.task
    units = list(partition(episodes, transport.size, transport.rank))
    local = np.zeros((0, len(task.eval_fields)))
    if units:
        local = task.evaluate_units(policy.model, policy.flat, units, policy.iteration)
    return transport.allgather_rows(local, shares(episodes, transport.size))


def follow(env) -> None:
    """Keep MuJoCo's free camera over the robot: look at the first body's x (the torso of the
    locomotion tasks, which otherwise run out of the picture). A no-op for other envs."""
    try:
        viewer = env.unwrapped.mujoco_renderer._get_viewer("rgb_array")
        viewer.cam.lookat[0] = env.unwrapped.data.xpos[1][0]
    except (AttributeError, IndexError):
        pass


def render(
    policy: LoadedPolicy,
    path: Path,
    episodes: int,
    steps: int,
    every: int,
    fps: int,
    size: tuple[int, int],
    track: bool = True,
) -> int:
    """Frames of ``episodes`` episodes (the same seeds as the evaluation's first ones) to a GIF or MP4."""
    from hpcars.tasks.env_backends import EpisodeKey, gym_seed
    from hpcars.tasks.envs import make_env
    from hpcars.tasks.rl import EVAL_STREAM

    task = cast(GymTask, policy.task)  # main() renders Gymnasium tasks only
    width, height = size
    try:
        env = make_env(task.env_id, render_mode="rgb_array", width=width, height=height)
    except Exception as err:
        raise ConfigError("--video", f"cannot render offscreen ({type(err).__name__}: {err})") from None
    frames = []
    for e in range(episodes):
        obs, _ = env.reset(seed=gym_seed(EpisodeKey(task.seed, EVAL_STREAM, policy.iteration, 0), e))
        t, done = 0, False
        while not done and (not steps or t < steps):
            if t % every == 0:
                if track:
                    follow(env)
                frames.append(env.render())
            out = policy.model.single(policy.flat, torch.as_tensor(np.asarray(obs), dtype=torch.float32)[None])
            obs, _, terminated, truncated, _ = env.step(task.to_actions(out)[0])
            done, t = terminated or truncated, t + 1
    env.close()
    if path.suffix.lower() == ".gif":
        from PIL import Image

        # one 32-colour palette for the whole clip and no dithering: a fraction of the size
        palette = Image.fromarray(frames[0]).quantize(colors=32)
        images = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0, optimize=True)
    else:
        try:
            import imageio.v2 as imageio

            imageio.mimwrite(path, frames, fps=fps, macro_block_size=1)
        except (ImportError, ValueError, RuntimeError) as err:
            raise ConfigError("--video", f"MP4 needs imageio-ffmpeg: pip install 'hpcars[video]' ({err})") from None
    return len(frames)


def report(policy: LoadedPolicy, rows: np.ndarray) -> str:
    task = policy.task
    if getattr(task, "episodes_per_branch", 0):
        returns, lengths = rows[:, 0], rows[:, 1]
        return (
            f"{len(returns)} episodes: return mean {returns.mean():.2f}  std {returns.std():.2f}  "
            f"min {returns.min():.2f}  max {returns.max():.2f};  length mean {lengths.mean():.1f}  "
            f"min {lengths.min():.0f}  max {lengths.max():.0f}"
        )
    return "  ".join(f"{k} {v:.6g}" for k, v in task.summarize(rows).items())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hpcars.play",
        description="Run a trained policy noise-free; optionally render a video.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("target", type=Path, help="a run directory or a checkpoint file")
    parser.add_argument("--which", choices=WHICH, default="best", help="the best evaluated parameters, or the last")
    parser.add_argument("--episodes", type=int, default=0, help="episodes (RL); 0 = the run's --eval-episodes")
    parser.add_argument("--seed", type=int, default=None, help="seed of the episodes (default: the run's)")
    parser.add_argument(
        "--task", default=None, help="a compatible task instead of the run's (e.g. another env version)"
    )
    parser.add_argument(
        "--env-backend",
        choices=ENV_BACKENDS,
        default=None,
        help="step the episodes with this backend instead of the run's (videos always render with Gymnasium)",
    )
    parser.add_argument("--video", type=Path, default=None, help="write a GIF or MP4 of the first episode(s) here")
    parser.add_argument("--video-episodes", type=int, default=1, help="episodes in the video")
    parser.add_argument("--video-steps", type=int, default=0, help="at most this many steps per episode (0 = all)")
    parser.add_argument("--video-every", type=int, default=1, help="render every this many steps")
    parser.add_argument("--fps", type=int, default=30, help="frames per second of the video")
    parser.add_argument("--size", default="480x320", help="video frame size, WIDTHxHEIGHT")
    parser.add_argument(
        "--camera",
        choices=("track", "fixed"),
        default="track",
        help="follow the robot (MuJoCo envs) or keep the env's own camera",
    )
    return parser


def _frame_size(args: argparse.Namespace) -> tuple[int, int]:
    """The video's (width, height); ``ConfigError`` for options that cannot make one."""
    if args.video is not None and args.video.suffix.lower() not in (".gif", ".mp4"):
        raise ConfigError("--video", f"must end in .gif or .mp4 (got {args.video})")
    parts = args.size.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or min(int(p) for p in parts) < 16:
        raise ConfigError("--size", f"must be WIDTHxHEIGHT, each >= 16 (got {args.size!r})")
    size = (int(parts[0]), int(parts[1]))
    if min(args.video_episodes, args.video_every, args.fps) < 1 or args.episodes < 0 or args.video_steps < 0:
        raise ConfigError("--episodes/--video-*", "counts must be >= 1 (episodes and video-steps: >= 0)")
    return size


def _show(policy: LoadedPolicy, rows: np.ndarray, args: argparse.Namespace, size: tuple[int, int]) -> None:
    """Rank 0: what the policy scored, and the video if asked for."""
    origin = f"score {policy.score:.6g} in training" if policy.score is not None else "the last iterate"
    print(
        f"{policy.which} policy of {policy.checkpoint} (iteration {policy.iteration}, {origin}), "
        f"task {policy.cfg.task}, seed {policy.cfg.seed}"
    )
    print(report(policy, rows), flush=True)
    if args.video is None:
        return
    if not isinstance(policy.task, GymTask):  # render steps a Gymnasium env of the task's id
        raise ConfigError("--video", f"{policy.cfg.task} is not a Gymnasium environment to render")
    track = args.camera == "track"
    n = render(policy, args.video, args.video_episodes, args.video_steps, args.video_every, args.fps, size, track)
    print(f"video: {n} frames at {args.fps} fps -> {args.video}", flush=True)


def main(argv: Sequence[str] | None = None, transport=None) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; before the first env imports mujoco
    pin_threads()
    args = build_parser().parse_args(argv)
    transport = transport or make_transport()
    lead = transport.rank == 0
    try:
        size = _frame_size(args)
        policy = load_policy(args.target, args.which, args.task, args.seed, args.env_backend)
        rows = evaluate(policy, args.episodes or policy.task.eval_units, transport)
        if lead:
            _show(policy, rows, args, size)
    except (ConfigError, CheckpointError) as err:
        if lead:
            print(f"hpcars.play: error: {err}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
