"""hpcars from Python in one page: scikit-learn's digits with an MLP, then Gymnasium's
Swimmer with the ARS paper's settings, and both learning curves in one figure.

    python examples/quickstart.py                       # runs/quickstart-*, quickstart.png
    mpirun -n 2 python examples/quickstart.py           # the same results, on two ranks

Needs the `data` and `rl` extras (scikit-learn, gymnasium[mujoco]) and matplotlib.
In a notebook, call `train_digits()` / `train_swimmer()` and plot the curves inline.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import hpcars


def curve_of(points: list[tuple[int, float]]):
    """A callback that collects (iteration, score) at every evaluation and never stops the run."""

    def callback(record) -> bool:
        if "score" in record.eval:
            points.append((record.iteration, record.eval["score"]))
        return True

    return callback


def train_digits(iterations: int, run_dir: Path) -> tuple[hpcars.Result, list[tuple[int, float]]]:
    points: list[tuple[int, float]] = []
    result = hpcars.fit(
        "digits",
        iterations=iterations,
        directions=32,
        top_directions=16,
        step_size=0.05,
        eval_every=10,
        run_dir=str(run_dir),
        callback=curve_of(points),
    )
    return result, points


def train_swimmer(iterations: int, run_dir: Path) -> tuple[hpcars.Result, list[tuple[int, float]]]:
    points: list[tuple[int, float]] = []
    result = hpcars.fit(
        preset="swimmer",
        iterations=iterations,
        eval_episodes=5,
        run_dir=str(run_dir),
        callback=curve_of(points),
    )
    return result, points


def plot(curves: dict[str, list[tuple[int, float]]], out: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: nothing global changes

    fig = Figure(figsize=(5 * len(curves), 3.5))
    for ax, (title, points) in zip(fig.subplots(1, len(curves), squeeze=False)[0], curves.items(), strict=True):
        ax.plot([i for i, _ in points], [s for _, s in points], marker=".")
        ax.set(title=title, xlabel="iteration", ylabel="evaluation score")
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits-iterations", type=int, default=300, help="ARS iterations on digits")
    parser.add_argument("--swimmer-iterations", type=int, default=200, help="ARS iterations on Swimmer-v5")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="where the two run directories go")
    parser.add_argument("--out", type=Path, default=Path("quickstart.png"), help="the figure")
    args = parser.parse_args()
    hpcars.pin_threads()
    digits, digits_curve = train_digits(args.digits_iterations, args.runs / "quickstart-digits")
    swimmer, swimmer_curve = train_swimmer(args.swimmer_iterations, args.runs / "quickstart-swimmer")
    plot({"digits": digits_curve, "Swimmer-v5": swimmer_curve}, args.out)
    print(f"digits: {digits.summary['final']}\nswimmer: {swimmer.summary['final']}\nfigure: {args.out}")


if __name__ == "__main__":
    main()
