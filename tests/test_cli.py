"""The command line: help, config files, and bad input (exit 2, one line, no traceback)."""

import dataclasses
import json
import pickle
from pathlib import Path

import pytest

from hpcars.cli.options import build_parser, parse_args
from hpcars.config import ConfigError, TrainConfig, option_name
from tests.conftest import checkpoint_file, run_cli, train_in_process


def test_help_lists_every_option_with_its_default():
    text = build_parser().format_help()
    for f in dataclasses.fields(TrainConfig):
        assert option_name(f.name) in text
    assert text.count("(default:") >= len(dataclasses.fields(TrainConfig))
    for name in (
        "--task",
        "--iterations",
        "--seed",
        "--directions",
        "--top-directions",
        "--step-size",
        "--noise-std",
        "--run-dir",
    ):
        assert name in text


def test_config_file_then_command_line(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('task = "digits"\ndirections = 12\nstep-size = 1\n')
    cfg = parse_args(["--config", str(path), "--directions", "7"])
    assert (cfg.task, cfg.directions, cfg.step_size) == ("digits", 7, 1.0)


@pytest.mark.parametrize(
    "args,option",
    [
        (["--directions", "0"], "--directions"),
        (["--top-directions", "40"], "--top-directions"),
        (["--step-size", "-1"], "--step-size"),
        (["--noise-std", "nan"], "--noise-std"),
        (["--task", "chess"], "--task"),
        (["--iterations", "ten"], "--iterations"),
        (["--variant", "v3"], "--variant"),
        (["--device", "tpu"], "--device"),
        (["--device", "cuda:first"], "--device"),
    ],
)
def test_bad_values_are_rejected_in_process(args, option):
    with pytest.raises(ConfigError) as err:
        cfg = parse_args(args)
        from hpcars.runtime.devices import choose_devices

        choose_devices(cfg.device, 0, 1)
    assert str(err.value).startswith(option)


#: number options where a non-finite value means something (and what)
NON_FINITE_ALLOWED = {("target", "nan"): "no target"}


@pytest.mark.parametrize(
    "name", [f.name for f in dataclasses.fields(TrainConfig) if isinstance(f.default, float)]
)  # every number option, those added later included
def test_every_number_option_refuses_nan_and_infinities_in_one_line(name):
    for text in ("nan", "inf", "-inf"):
        if (name, text) in NON_FINITE_ALLOWED:
            parse_args([option_name(name), text])
            continue
        with pytest.raises(ConfigError) as err:
            parse_args([option_name(name), text])
        assert str(err.value).startswith(f"{option_name(name)}: "), (text, str(err.value))


def test_format_reward_must_be_finite_and_not_negative(tmp_path, capsys):
    status, lines = train_in_process(
        ["--task", "countdown", "--format-reward", "nan", "--run-dir", str(tmp_path)], capsys
    )
    assert status == 2 and lines == ["hpcars.train: error: --format-reward: must be a finite number >= 0 (got nan)"]
    with pytest.raises(ConfigError, match=r"^--format-reward: must be a finite number >= 0 \(got -0.5\)"):
        parse_args(["--task", "countdown", "--format-reward", "-0.5"])


def test_cuda_device_that_is_not_visible_exits_2_with_one_line(tmp_path, capsys):
    """``cuda:K`` with K the number of visible GPUs cannot exist, whatever machine runs this."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    status, lines = train_in_process(["--device", f"cuda:{gpus}", "--run-dir", str(tmp_path / "r")], capsys)
    assert status == 2
    assert lines == [f"hpcars.train: error: --device: cuda:{gpus} is not visible here ({gpus} CUDA devices)"]
    assert not (tmp_path / "r").exists()


def test_bad_config_file_keys(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("directoins = 3\n")
    with pytest.raises(ConfigError, match="unknown option 'directoins'"):
        parse_args(["--config", str(path)])
    path.write_text('directions = "many"\n')
    with pytest.raises(ConfigError, match="--directions"):
        parse_args(["--config", str(path)])


@pytest.mark.parametrize("ranks", [1, 2])
def test_bad_input_exits_2_with_one_line(tmp_path, ranks):
    done = run_cli(["--top-directions", "99", "--run-dir", str(tmp_path / "r")], ranks=ranks)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == ["hpcars.train: error: --top-directions: must be in [0, --directions=32] (got 99)"]
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "r").exists()


def test_existing_run_with_other_config_is_refused_untouched(tmp_path):
    run_dir = tmp_path / "r"
    assert run_cli(["--iterations", "3", "--run-dir", str(run_dir)]).returncode == 0
    ckpt = checkpoint_file(run_dir)
    before = ckpt.read_bytes()
    done = run_cli(["--iterations", "3", "--directions", "8", "--run-dir", str(run_dir)])
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"hpcars.train: error: --run-dir: {run_dir} holds a run with a different config (--directions 32 -> 8); "
        "pass --force-resume to continue it anyway, or choose a new directory"
    ]
    assert ckpt.read_bytes() == before
    config = json.loads((run_dir / "config.json").read_text())
    assert config["iterations"] == 3 and config["directions"] == 32


BAD_PATHS = [
    (["--run-dir", "/proc/hpcars/run"], "--run-dir: cannot create /proc/hpcars/run"),
    (["--run-dir", "/proc/self"], "--run-dir: cannot write in /proc/self"),
    (["--run-dir", "/etc/hostname"], "--run-dir: cannot create /etc/hostname: a file of that name exists"),
    (["--config", "/tmp"], "--config: /tmp is a directory, not a file"),
    (["--config", "/nonexistent/run.toml"], "--config: no such file: /nonexistent/run.toml"),
    (["--resume", "/proc/hpcars"], "--resume: /proc/hpcars holds no checkpoint to resume from"),
]


@pytest.mark.parametrize("args, message", BAD_PATHS)
def test_unusable_paths_are_one_line_errors(args, message, capsys):
    status, lines = train_in_process([*args, "--iterations", "2"], capsys)
    assert status == 2 and len(lines) == 1 and lines[0].startswith(f"hpcars.train: error: {message}"), lines


def test_unusable_run_dir_on_two_ranks_is_one_line_from_rank_0():
    """Rank 0 decides and broadcasts the refusal: the other rank must raise it too (the
    error has to survive pickling) and stay quiet."""
    done = run_cli(["--run-dir", "/proc/hpcars/run", "--iterations", "2"], ranks=2)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "hpcars.train: error: --run-dir: cannot create /proc/hpcars/run: No such file or directory"
    ]


def test_config_that_is_not_text(tmp_path, capsys):
    path = tmp_path / "binary.toml"
    path.write_bytes(bytes(range(128, 256)))
    assert train_in_process(["--config", str(path)], capsys) == (
        2,
        [f"hpcars.train: error: --config: {path} is not UTF-8 text"],
    )


def test_default_run_dir_in_an_unwritable_working_directory():
    done = run_cli(["--iterations", "2"], cwd=Path("/proc/self"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "hpcars.train: error: --run-dir: cannot create runs: No such file or directory "
        "(the default place for run directories; pass --run-dir)"
    ]


def test_config_error_survives_the_broadcast_from_rank_0():
    err = pickle.loads(pickle.dumps(ConfigError("--run-dir", "cannot create /x")))
    assert isinstance(err, ConfigError) and str(err) == "--run-dir: cannot create /x" and err.option == "--run-dir"
