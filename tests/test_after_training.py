"""After training: best tracking, play (and its video), export, dashboards."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import shutil
import subprocess
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hpcars.analysis.report import write_report
from hpcars.cli.export import main as export_main
from hpcars.cli.play import main as play_main
from hpcars.run import checkpoint
from hpcars.run.policy import load_policy
from hpcars.runtime.comm import SingleProcess
from hpcars.tasks.envs import make_env
from tests.conftest import ROOT, checkpoint_file, run_cli, run_train

HOPPER = [
    "--task",
    "Hopper-v5",
    "--directions",
    "4",
    "--step-size",
    "0.05",
    "--noise-std",
    "0.05",
    "--shift",
    "1",
    "--eval-every",
    "3",
    "--eval-episodes",
    "4",
    "--branch-batch",
    "8",
]


def _play(args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        status = play_main(args, transport=SingleProcess())
    return status, out.getvalue()


def _evaluations(run_dir: Path) -> list[tuple[int, float]]:
    rows = csv.DictReader((run_dir / "metrics.csv").read_text().splitlines())
    return [(int(r["iteration"]), float(r["score"])) for r in rows if r["score"]]


# -- best tracking ---------------------------------------------------------------------------------
def test_best_is_the_theta_evaluated_at_the_best_iteration_and_survives_resume(tmp_path):
    base = [
        "--task",
        "digits",
        "--directions",
        "6",
        "--eval-every",
        "3",
        "--step-size",
        "0.3",
        "--checkpoint-every",
        "3",
    ]
    assert run_train([*base, "--iterations", "12", "--run-dir", str(tmp_path / "a")]).returncode == 0
    best_iteration, best_score = max(_evaluations(tmp_path / "a"), key=lambda e: (e[1], -e[0]))
    saved = checkpoint.read(checkpoint_file(tmp_path / "a"))
    assert (saved.best.iteration, saved.best.score) == (best_iteration, best_score)
    # the same run stopped at the best iteration: its last parameters are the best ones
    assert run_train([*base, "--iterations", str(best_iteration), "--run-dir", str(tmp_path / "b")]).returncode == 0
    then = checkpoint.read(checkpoint_file(tmp_path / "b")).members[0].params
    assert all(np.array_equal(then[n], saved.best.params[n]) for n in then)
    # resumed in two parts: the same best
    assert run_train([*base, "--iterations", "6", "--run-dir", str(tmp_path / "c")]).returncode == 0
    assert run_train(["--resume", str(tmp_path / "c"), "--iterations", "12"]).returncode == 0
    resumed = checkpoint.read(checkpoint_file(tmp_path / "c")).best
    assert resumed.iteration == best_iteration and all(
        np.array_equal(resumed.params[n], saved.best.params[n]) for n in then
    )
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["best"] == {"iteration": best_iteration, "score": best_score, "spread": None}  # one held-out unit


# -- play ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hopper_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("hopper") / "run"
    done = run_train([*HOPPER, "--variant", "v2", "--iterations", "9", "--run-dir", str(run_dir)])
    assert done.returncode == 0, done.stderr
    return run_dir


def test_play_reproduces_the_evaluation_returns(hopper_run):
    saved = checkpoint.read(checkpoint_file(hopper_run))
    status, out = _play([str(hopper_run)])
    assert status == 0, out
    assert f"return mean {saved.best.score:.2f}  std {saved.best.spread:.2f}" in out
    logged = dict(_evaluations(hopper_run))
    status, out = _play([str(hopper_run), "--which", "last"])
    assert f"return mean {logged[9]:.2f}" in out
    # on two ranks the episodes are split, the numbers the same
    two = run_cli([str(hopper_run)], ranks=2, module="hpcars.play")
    assert two.returncode == 0 and f"return mean {saved.best.score:.2f}" in two.stdout, two.stderr


def _can_render() -> bool:
    probe = (
        "import gymnasium as g; e = g.make('Hopper-v5', render_mode='rgb_array', width=32, height=32); "
        "e.reset(seed=0); assert e.render().std() > 0"
    )
    env = {**os.environ, "MUJOCO_GL": "egl"}
    return subprocess.run([str(Path(os.sys.executable)), "-c", probe], env=env, capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def renderer():
    """Headless EGL rendering; installs Debian's EGL libraries when missing (needs root)."""
    if not _can_render():
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            pytest.skip("no headless OpenGL (EGL) here and no root to install libegl1 libegl-mesa0")
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "libegl1", "libegl-mesa0", "libgl1"],
            capture_output=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    assert _can_render(), "MuJoCo cannot render offscreen with EGL even after installing libegl1 libegl-mesa0"


def test_play_writes_a_video_of_real_frames(hopper_run, renderer, tmp_path):
    gif = tmp_path / "hopper.gif"
    done = run_cli(
        [
            str(hopper_run),
            "--episodes",
            "1",
            "--video",
            str(gif),
            "--video-steps",
            "40",
            "--video-every",
            "2",
            "--size",
            "96x64",
        ],
        module="hpcars.play",
    )
    assert done.returncode == 0, done.stderr
    with Image.open(gif) as image:
        assert image.size == (96, 64) and image.n_frames == 20
        frames = []
        for k in (0, 19):
            image.seek(k)
            frames.append(np.asarray(image.convert("RGB"), dtype=np.float64))
    assert all(f.std() > 5 for f in frames) and np.abs(frames[0] - frames[1]).mean() > 0.5  # a picture that moves


def test_play_bad_input(hopper_run, tmp_path):
    assert _play([str(tmp_path / "nothing")])[0] == 2
    assert _play([str(hopper_run), "--video", str(tmp_path / "x.avi")])[0] == 2
    for size in ("96xab", "96x", "8x64"):  # one line naming --size, never a ValueError's traceback
        assert _play([str(hopper_run), "--video", str(tmp_path / "x.gif"), "--size", size])[0] == 2


# -- export ----------------------------------------------------------------------------------------------
def _observations(env_id: str, count: int = 64) -> np.ndarray:
    env = make_env(env_id)
    obs, _ = env.reset(seed=3)
    seen = []
    for _ in range(count):
        seen.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    return np.array(seen, dtype=np.float32)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _numpy_loader():
    namespace: dict = {}
    exec((ROOT / "docs" / "load_policy.py").read_text(), namespace)
    return namespace["load_policy"]


@pytest.mark.parametrize(
    "name, args",
    [
        ("linear", [*HOPPER]),
        ("mlp", [*HOPPER, "--policy", "mlp", "--hidden", "8"]),
        ("linear-v2", [*HOPPER, "--variant", "v2"]),
        (
            "mlp-v2-discrete",
            [
                "--task",
                "CartPole-v1",
                "--policy",
                "mlp",
                "--hidden",
                "8",
                "--variant",
                "v2",
                "--eval-every",
                "3",
                "--eval-episodes",
                "2",
                "--directions",
                "4",
            ],
        ),
    ],
)
def test_export_acts_like_hpcars(tmp_path, name, args):
    run_dir = tmp_path / "run"
    assert run_train([*args, "--iterations", "4", "--run-dir", str(run_dir)]).returncode == 0
    policy = load_policy(run_dir, "best")
    observations = _observations(policy.cfg.task)
    with torch.no_grad():
        outputs = policy.model.single(policy.flat, torch.from_numpy(observations))
    expected = policy.task.to_actions(outputs)
    formats = ["npz", "torchscript"] + (["onnx"] if _installed("onnx") and _installed("onnxruntime") else [])
    for fmt in formats:
        out = tmp_path / f"policy.{fmt}"
        assert export_main([str(run_dir), "--format", fmt, "--out", str(out)]) == 0
        if fmt == "npz":
            actions = _numpy_loader()(out)(observations)
        elif fmt == "onnx":
            import onnxruntime

            actions = onnxruntime.InferenceSession(str(out)).run(None, {"obs": observations})[0]
        else:
            with torch.no_grad():
                actions = torch.jit.load(str(out))(torch.from_numpy(observations)).numpy()
        if policy.task.discrete:
            assert np.array_equal(actions, expected), fmt
        else:
            np.testing.assert_allclose(actions, expected, rtol=1e-5, atol=1e-6, err_msg=fmt)
    with np.load(tmp_path / "policy.npz") as exported:
        assert json.loads(str(exported["meta"]))["task"] == policy.cfg.task
        assert exported["obs_shape"].tolist() == [observations.shape[1]]


def test_export_refuses_what_npz_cannot_hold(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert (
        run_train(
            ["--task", "tests.plugins_for_tests:sphere", "--iterations", "2", "--run-dir", str(run_dir)]
        ).returncode
        == 0
    )
    assert export_main([str(run_dir)]) == 2
    assert "npz holds Linear layers" in capsys.readouterr().err


# -- dashboards --------------------------------------------------------------------------------------------
def test_tensorboard_events_are_written_as_the_run_goes(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    done = run_train(["--iterations", "20", "--eval-every", "5", "--log", "tensorboard", "--run-dir", str(run_dir)])
    assert done.returncode == 0, done.stderr
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert len(events.Scalars("train/reward_mean")) == 20
    assert [e.step for e in events.Scalars("eval/score")] == [5, 10, 15, 20]
    assert "it/s  ETA" in done.stdout


def _chromium() -> str | None:
    found = shutil.which("chromium")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium"],
            capture_output=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        found = shutil.which("chromium")
    return found


def test_html_report_renders_its_plots_in_a_headless_browser(tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no chromium here and no root to install Debian's chromium")
    for seed in (0, 1):
        args = [
            "--iterations",
            "30",
            "--seed",
            str(seed),
            "--target",
            "-10",
            "--run-dir",
            str(tmp_path / f"runs/s{seed}"),
        ]
        assert run_train(args).returncode == 0
    out = write_report(tmp_path)
    page = (out / "report.html").as_uri()
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [chromium, *flags, "--virtual-time-budget=3000", "--dump-dom", page],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    images = dom.count("<img")
    assert images >= 1 and f'data-plots-loaded="{images}"' in dom
    shot = tmp_path / "shot.png"
    subprocess.run(
        [chromium, *flags, "--window-size=1000,800", f"--screenshot={shot}", page], capture_output=True, timeout=120
    )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.std() > 10  # a rendered page with a plot, not a blank one
