"""Convergence benchmark: train named configurations for a wall-clock budget each and record test PSNR against
training time and step, so configurations are compared side by side in one run. With ``--eval-views`` the score
covers only the first views of the test split, and every output says so ("test-subset PSNR, 5 of 25 views"):
it is not the test PSNR a paper reports.

    python -m nerfexp.studies.bench --out bench/lego --budget 600 --eval-every 60 \\
        --config fast="experiment=lego_fast" \\
        --config freq="experiment=lego_tiny dataset.downscale=4"

Writes ``<out>/bench.csv`` (config, step, time_s, psnr, views; training rays/s, samples per ray and points (field
queries) per second since the previous evaluation; the evaluation's rendering rays/s), ``<out>/bench.png`` (PSNR vs
time and vs step) and ``<out>/summary.md`` (final PSNR, speeds, seconds to reach each ``--levels`` PSNR).
Evaluation time is not counted as training time.
"""
from __future__ import annotations

import argparse
import csv
import shlex
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict
from tqdm import tqdm

from nerfexp.data.scene import eval_background
from nerfexp.metrics import psnr
from nerfexp.pipelines.render_view import render_image
from nerfexp.runtime.allocator import keep_freed_memory
from nerfexp.train import Trainer

CONF = Path(__file__).resolve().parents[2] / "conf"
FIELDS = ("config", "step", "time_s", "psnr", "views", "rays_per_s", "samples_per_ray", "points_per_s",
          "render_rays_per_s")


def compose_config(overrides: list[str], budget_s: float) -> DictConfig:
    """The training config for ``overrides`` (as train.py composes it), with the time budget and no logger."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides + ["logger=none"])
    with open_dict(cfg):
        cfg.trainer.max_time_s = budget_s
        cfg.trainer.max_steps = 10 ** 9
    return cfg


def score_label(rows: list[dict]) -> str:
    """What the ``psnr`` of ``rows`` is: the test PSNR over every test view, or a subset's."""
    views = {r["views"] for r in rows}
    if all(v.split("/")[0] == v.split("/")[1] for v in views):
        return "test PSNR"
    return f"test-subset PSNR ({', '.join(sorted(v.replace('/', ' of ') for v in views))} views)"


def test_psnr(trainer: Trainer, split, max_views: int | None) -> tuple[float, float]:
    """Mean PSNR over the first ``max_views`` views of ``split``, and the rendering speed in rays/s."""
    bg = eval_background(trainer.cfg.dataset.background)
    n = len(split) if max_views is None else min(max_views, len(split))
    trainer.pipeline.eval()
    t0, rays0 = time.perf_counter(), trainer.pipeline.rays_rendered
    scores = [psnr(render_image(trainer.pipeline, split, k, bg, trainer.cfg.eval.chunk, trainer.device)["rgb"],
                   split.composited(k, bg)) for k in range(n)]
    rays_s = (trainer.pipeline.rays_rendered - rays0) / max(time.perf_counter() - t0, 1e-9)
    return sum(scores) / len(scores), rays_s


def run_config(name: str, overrides: list[str], out: Path, budget_s: float, eval_every_s: float,
               eval_views: int | None) -> list[dict]:
    """Train one configuration for ``budget_s`` seconds of training; test PSNR every ``eval_every_s``."""
    cfg = compose_config(overrides, budget_s)
    trainer = Trainer(cfg, out / name)
    test_split = trainer.dataset.load("test")
    rows = []
    next_eval = eval_every_s
    mark = (0, 0.0, 0)  # (step, training seconds, field queries) at the previous evaluation
    bar = tqdm(total=round(budget_s), unit="s", desc=name, dynamic_ncols=True, mininterval=1.0)
    while trainer.train_time < budget_s:
        t0 = time.perf_counter()
        trainer.train_step()
        dt = time.perf_counter() - t0
        trainer.train_time += dt
        bar.update(min(dt, max(budget_s - bar.n, 0.0)))
        if trainer.train_time >= next_eval or trainer.train_time >= budget_s:
            points = int(trainer.train_points)
            steps, seconds = trainer.step - mark[0], max(trainer.train_time - mark[1], 1e-9)
            rays = steps * trainer.cfg.trainer.batch_rays
            value, render_rays_s = test_psnr(trainer, test_split, eval_views)
            n = len(test_split) if eval_views is None else min(eval_views, len(test_split))
            rows.append({"config": name, "step": trainer.step, "time_s": round(trainer.train_time, 2),
                         "psnr": round(value, 3), "views": f"{n}/{len(test_split)}",
                         "rays_per_s": round(rays / seconds), "samples_per_ray": round((points - mark[2])
                                                                                     / max(rays, 1), 2),
                         "points_per_s": round((points - mark[2]) / seconds),
                         "render_rays_per_s": round(render_rays_s)})
            mark = (trainer.step, trainer.train_time, points)
            bar.write(f"{name}: {value:.2f} dB at step {trainer.step}, {trainer.train_time:.0f} s; "
                      f"{rows[-1]['rays_per_s']:,} rays/s x {rows[-1]['samples_per_ray']} samples/ray = "
                      f"{rows[-1]['points_per_s']:,} points/s; renders {rows[-1]['render_rays_per_s']:,} rays/s")
            next_eval += eval_every_s
    bar.close()
    trainer.close()
    return rows


def mean_of(rows: list[dict], key: str) -> float:
    """``key`` over a configuration's whole run: each evaluation window weighted by its training seconds."""
    windows = [r["time_s"] - (rows[k - 1]["time_s"] if k else 0.0) for k, r in enumerate(rows)]
    return sum(r[key] * w for r, w in zip(rows, windows)) / max(sum(windows), 1e-9)


def time_to(rows: list[dict], level: float) -> float | None:
    """Training seconds until the score first reached ``level`` (None: never)."""
    return next((r["time_s"] for r in rows if r["psnr"] >= level), None)


def write_outputs(rows: list[dict], out: Path, levels: list[float], configs: dict[str, list[str]]) -> None:
    """bench.csv, bench.png and summary.md."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(out / "bench.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(FIELDS))
        writer.writeheader()
        writer.writerows(rows)
    label = score_label(rows) if rows else "test PSNR"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name in configs:
        mine = [r for r in rows if r["config"] == name]
        axes[0].plot([r["time_s"] for r in mine], [r["psnr"] for r in mine], marker="o", label=name)
        axes[1].plot([r["step"] for r in mine], [r["psnr"] for r in mine], marker="o", label=name)
    for ax, xlabel in zip(axes, ("training time (s)", "step")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{label} (dB)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "bench.png", dpi=120)
    plt.close(fig)
    lines = [f"| config | overrides | final {label} | steps | train rays/s | samples/ray | points/s | render rays/s | "
             + " | ".join(f"s to {x:g} dB" for x in levels) + " |", "|" + "---|" * (8 + len(levels))]
    for name, overrides in configs.items():
        mine = [r for r in rows if r["config"] == name]
        if not mine:
            continue
        reach = [time_to(mine, x) for x in levels]
        last = mine[-1]
        lines.append(f"| {name} | `{' '.join(overrides)}` | {last['psnr']:.2f} | {last['step']} | "
                     f"{mean_of(mine, 'rays_per_s'):,.0f} | {mean_of(mine, 'samples_per_ray'):.1f} | "
                     f"{mean_of(mine, 'points_per_s'):,.0f} | {last.get('render_rays_per_s', 0):,} | "
                     + " | ".join("-" if s is None else f"{s:.0f}" for s in reach) + " |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def parse_configs(items: list[str]) -> dict[str, list[str]]:
    """``name=override override ...`` -> {name: [override, ...]}."""
    configs = {}
    for item in items:
        name, sep, rest = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"--config {item!r}: expected name=\"override override ...\"")
        configs[name] = shlex.split(rest)
    return configs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", required=True,
                        help='name="hydra overrides": one configuration (repeat the flag to compare)')
    parser.add_argument("--out", type=Path, default=Path("bench"), help="output folder")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds of training per configuration")
    parser.add_argument("--eval-every", type=float, default=60.0, help="seconds of training between evaluations")
    parser.add_argument("--eval-views", type=int, default=None, help="test views per evaluation (default all)")
    parser.add_argument("--levels", type=float, nargs="*", default=[20.0, 25.0, 28.0],
                        help="PSNR levels whose time-to-reach goes in the summary")
    args = parser.parse_args(argv)
    keep_freed_memory()
    configs = parse_configs(args.config)
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for name, overrides in configs.items():
        rows += run_config(name, overrides, args.out, args.budget, args.eval_every, args.eval_views)
        write_outputs(rows, args.out, args.levels, configs)  # after each config, so a crash loses nothing
    print((args.out / "summary.md").read_text())


if __name__ == "__main__":
    main()
