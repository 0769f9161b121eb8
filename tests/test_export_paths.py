"""Where ``hpcars-export`` writes without ``--out``: the run's own export folder, or beside a loose checkpoint."""

from __future__ import annotations

import shutil

import numpy as np

from hpcars.cli.export import main as export_main
from tests.conftest import checkpoint_file, run_train


def test_default_output_of_a_run_a_checkpoint_in_it_and_a_loose_checkpoint(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "r"
    done = run_train(["--iterations", "2", "--eval-every", "1", "--run-dir", str(run_dir)])
    assert done.returncode == 0, done.stderr
    in_run = checkpoint_file(run_dir)
    loose = tmp_path / "saved" / "mine.h5"
    loose.parent.mkdir()
    shutil.copy(in_run, loose)
    expected = {
        loose: tmp_path / "saved" / "export" / "mine-policy-best.npz",  # not tmp_path/export: unrelated to it
        run_dir: run_dir / "export" / "policy-best.npz",
        in_run: run_dir / "export" / f"{in_run.stem}-policy-best.npz",  # not the run's own export overwritten
    }
    for target, out in expected.items():
        assert export_main([str(target)]) == 0, capsys.readouterr().err
        assert capsys.readouterr().out.rstrip().endswith(f"-> {out}")
        with np.load(out) as exported:
            assert int(exported["layers"]) >= 1
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.npz"))
    assert written == sorted(str(p.relative_to(tmp_path)) for p in expected.values())  # nothing beside "runs/"
