"""Report on a multirun sweep from its jobs' ``metrics.jsonl`` (no network needed).

    python -m nerfexp.studies.report <multirun dir> [--levels 20 25 30] [--wandb]

Writes ``<multirun dir>/report/``: ``summary.csv`` and ``summary.md`` (one row per job: overrides (the markdown
keeps only the swept ones), final/best val PSNR, train PSNR, train-val gap, steps and seconds to reach PSNR levels,
rays/s, test metrics; and what could not be shown, with the key to set),
``psnr_vs_step.png``, ``psnr_vs_time.png`` and ``gap.png`` (train vs val PSNR per job, ordered by the swept values;
a plot without data is not drawn), ``by_config.csv``/``by_config.md`` (jobs that differ only in ``seed`` pooled:
mean, std and 95% interval of validation PSNR, train-val gap and time to each level, and a paired comparison with
the best configuration) and ``psnr_vs_step_by_config.png`` (mean over seeds with a band).
``--wandb`` also logs the table (a ``wandb.Table``) and the plots to one W&B run of job type ``report`` in the
sweep's group; offline unless ``WANDB_MODE=online``, its files then go to ``<multirun dir>/report/wandb``.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import yaml

from nerfexp.studies.seeds import SEED_KEY, by_config, group_by_config

DEFAULT_LEVELS = (20.0, 25.0, 30.0)
SELECTION_NOTE = ("Selection: compare and choose on `final_val_psnr` / `best_val_psnr` (validation views, disjoint "
                  "from test; `train.py` returns the final one to sweepers such as Optuna). `test_psnr` is rendered "
                  "once at the end of each job and chose nothing.")


def read_jsonl(path: Path) -> list[dict]:
    """Records of a ``metrics.jsonl``; a truncated last line (a crash mid-write) is ignored."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Job folders of a multirun dir (those with a ``metrics.jsonl``), in job-number order."""
    jobs = [p.parent for p in sweep_dir.glob("*/metrics.jsonl")]

    def key(p: Path):
        return (0, int(p.name)) if p.name.isdigit() else (1, p.name)

    return sorted(jobs, key=key)


def job_overrides(job: Path) -> list[str]:
    path = job / ".hydra" / "overrides.yaml"
    return [str(o) for o in yaml.safe_load(path.read_text())] if path.is_file() else []


def first_reaching(points: list[tuple[float, float]], level: float) -> float | None:
    """The first x whose y >= level, for ``points`` of (x, y) in order."""
    for x, y in points:
        if y is not None and y >= level:
            return x
    return None


def summarize_job(job: Path, levels: tuple[float, ...] = DEFAULT_LEVELS) -> dict:
    """One report row for a job folder."""
    rows = read_jsonl(job / "metrics.jsonl")
    val = [(r["step"], r.get("time_s"), r["val_psnr"]) for r in rows if r.get("val_psnr") is not None]
    train = [r["train_psnr"] for r in rows if r.get("train_psnr") is not None]
    rays = sorted(r["rays_per_s"] for r in rows if r.get("rays_per_s"))
    test = next((r for r in reversed(rows) if r.get("test_psnr") is not None), {})
    steps = max((r["step"] for r in rows), default=0)
    times = [r["time_s"] for r in rows if r.get("time_s") is not None]
    final_train = sum(train[-3:]) / len(train[-3:]) if train else None
    final_val = val[-1][2] if val else None
    row = {
        "job": job.name,
        "overrides": job_overrides(job),
        "final_val_psnr": final_val,
        "best_val_psnr": max((v for _, _, v in val), default=None),
        "final_train_psnr": final_train,
        "train_val_gap": (final_train - final_val) if final_train is not None and final_val is not None else None,
        "test_psnr": test.get("test_psnr"),
        "test_ssim": test.get("test_ssim"),
        "steps": steps,
        "train_time_s": max(times) if times else None,
        "rays_per_s": rays[len(rays) // 2] if rays else None,
    }
    for level in levels:
        row[f"steps_to_{level:g}dB"] = first_reaching([(s, v) for s, _, v in val], level)
        row[f"seconds_to_{level:g}dB"] = first_reaching([(t, v) for _, t, v in val], level)
    return row


def parse_overrides(overrides: list[str]) -> dict[str, str]:
    """``{"key": "value"}`` of a job's overrides, each parsed by Hydra's override grammar, so a value holding
    a space or an ``=`` stays whole. Values are as typed; ``+``/``++``/``~`` are dropped from keys:
    ``+sweeps=lr`` gives ``{"sweeps": "lr"}``, ``~trainer.threads`` gives ``{"trainer.threads": ""}``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    parsed = {}
    for item in overrides:
        text = str(item)
        try:
            key = parser.parse_override(text).key_or_group
        except Exception:  # not Hydra's grammar (a hand-written file): key up to the first '='
            key = text.partition("=")[0].lstrip("+~")
        # the key holds no '=', so the value is everything after the first one, exactly as typed
        parsed[key] = text.partition("=")[2] if "=" in text else ""
    return parsed


def swept_keys(rows: list[dict]) -> list[str]:
    """Override keys whose value differs between jobs (the swept parameters), in first-seen order.

    A key set in some jobs only counts as swept; with a single job, every override key does.
    """
    values: dict[str, list] = {}
    parsed = [parse_overrides(row["overrides"]) for row in rows]
    for params in parsed:
        for key in params:
            values.setdefault(key, [])
    for key in values:
        values[key] = [p.get(key) for p in parsed]
    return [k for k, v in values.items() if len(set(v)) > 1 or len(rows) == 1]


def override_value(row: dict, key: str | None) -> str | None:
    return parse_overrides(row["overrides"]).get(key) if key else None


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.2f}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def write_tables(rows: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cols = list(rows[0].keys())
    with open(out / "summary.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, cols)
        writer.writeheader()
        # overrides as a JSON list: a value holding a space stays one value
        writer.writerows({**r, "overrides": json.dumps(r["overrides"])} for r in rows)
    # the markdown table shows only the swept overrides (all of them are in summary.csv)
    keys = swept_keys(rows)
    md_cols = ["job", "swept", *cols[2:]]
    md_rows = [{**r, "swept": " ".join(f"{k}={override_value(r, k)}" for k in keys)} for r in rows]
    lines = ["| " + " | ".join(md_cols) + " |", "|" + "---|" * len(md_cols)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in md_cols) + " |" for r in md_rows]
    lines += ["", SELECTION_NOTE]
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def _sort_key(value: str | None):
    try:
        return (0, float(value))
    except (TypeError, ValueError):
        return (1, str(value))


def job_label(row: dict, keys: list[str]) -> str:
    """``key=value`` of the swept keys (their last dotted part), or the job name when nothing is swept."""
    return " ".join(f"{k.rsplit('.', 1)[-1]}={override_value(row, k)}" for k in keys) or row["job"]


def job_order(rows: list[dict], keys: list[str]) -> list[int]:
    """Row indices sorted by the swept values (numerically where they are numbers), first key first."""
    return sorted(range(len(rows)), key=lambda n: [_sort_key(override_value(rows[n], k)) for k in keys])


def job_records(sweep_dir: Path, rows: list[dict], y_key: str, x_key: str) -> list[list[dict]]:
    """Per row, the job's records that have both ``y_key`` and ``x_key``."""
    return [[r for r in read_jsonl(sweep_dir / row["job"] / "metrics.jsonl")
             if r.get(y_key) is not None and r.get(x_key) is not None] for row in rows]


def save_figure(fig, ax, path: Path, legend_size: int | None = 7) -> Path:
    """Grid and legend on ``ax``, ``fig`` saved to ``path`` (120 dpi) and closed; returns ``path``."""
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_curves(curves: list[list[dict]], x_key: str, y_key: str, labels: list[str], colours: dict, order: list[int],
                ylabel: str, path: Path, title: str = "") -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k in order:
        if curves[k]:
            ax.plot([r[x_key] for r in curves[k]], [r[y_key] for r in curves[k]], "-o", ms=3, color=colours[k],
                    label=labels[k])
    ax.set_xlabel("step" if x_key == "step" else "training time [s]")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, ax, path)


def write_plots(sweep_dir: Path, rows: list[dict], out: Path) -> tuple[list[Path], list[str]]:
    """PSNR-vs-step and PSNR-vs-time (coloured by the swept values) and the train-vs-val gap; returns the plots and
    notes on what could not be drawn. A plot without data is not drawn: with fewer than two validations per job
    the curves are training PSNR, in files and labels that say so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = swept_keys(rows)
    labels = [job_label(r, keys) for r in rows]
    order = job_order(rows, keys)
    cmap = matplotlib.colormaps["viridis"]
    colours = {k: cmap(n / max(len(rows) - 1, 1)) for n, k in enumerate(order)}
    written, notes = [], []
    for x_key, name in (("step", "psnr_vs_step.png"), ("time_s", "psnr_vs_time.png")):
        val = job_records(sweep_dir, rows, "val_psnr", x_key)
        if any(len(c) >= 2 for c in val):
            written.append(plot_curves(val, x_key, "val_psnr", labels, colours, order, "validation PSNR [dB]",
                                       out / name))
            continue
        train = job_records(sweep_dir, rows, "train_psnr", x_key)
        what = "step" if x_key == "step" else "training time"
        notes.append(f"No validation PSNR curve over {what}: every job logged validation at most once (the final "
                     "validation); set `trainer.val_every` below `trainer.max_steps` for curves."
                     + (" Training PSNR (batches of training rays, not held-out views) is plotted instead in "
                        f"`train_{name}`." if any(len(c) >= 2 for c in train) else
                        " No training PSNR was logged either (`trainer.log_every`)."))
        if any(len(c) >= 2 for c in train):
            written.append(plot_curves(train, x_key, "train_psnr", labels, colours, order,
                                       "training PSNR (batch) [dB]", out / f"train_{name}",
                                       "training PSNR: no validation curve was logged (trainer.val_every)"))
    have_gap = [k for k in order if rows[k]["final_train_psnr"] is not None and rows[k]["final_val_psnr"] is not None]
    if not have_gap:
        notes.append("No train-val gap plot: no job logged both training and validation PSNR.")
        return written, notes
    fig, ax = plt.subplots(figsize=(max(7.0, 0.9 * len(have_gap)), 4.5))
    xs = list(range(len(have_gap)))
    ax.plot(xs, [rows[k]["final_train_psnr"] for k in have_gap], "-o", label="train PSNR (last 3 logs)")
    ax.plot(xs, [rows[k]["final_val_psnr"] for k in have_gap], "-s", label="val PSNR (last)")
    ax.set_xticks(xs, [labels[k] for k in have_gap], rotation=30 if len(have_gap) > 3 else 0,
                  ha="right" if len(have_gap) > 3 else "center", fontsize=7)
    ax.set_xlabel(", ".join(keys) or "job")
    ax.set_ylabel("PSNR [dB]")
    ax.set_title("train-val gap")
    written.append(save_figure(fig, ax, out / "gap.png", legend_size=None))
    return written, notes


def write_seed_plot(sweep_dir: Path, rows: list[dict], params: list[dict[str, str]], swept: list[str],
                    path: Path) -> Path | None:
    """Validation PSNR vs step per configuration: the mean over its seeds as a line, mean +- one standard
    deviation as a band (at the steps every seed logged). None (no file) without two validations per job."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    groups = group_by_config(rows, params, swept)
    curves = {}
    for key, members in groups.items():
        per_seed = [{r["step"]: r["val_psnr"] for r in job_records(sweep_dir, [row], "val_psnr", "step")[0]}
                    for _, row in members]
        steps = sorted(set.intersection(*(set(c) for c in per_seed))) if per_seed else []
        if len(steps) >= 2:
            curves[key] = (steps, np.array([[c[s] for s in steps] for c in per_seed]))
    if not curves:
        return None
    cmap = matplotlib.colormaps["viridis"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for n, (key, (steps, values)) in enumerate(curves.items()):
        colour = cmap(n / max(len(curves) - 1, 1))
        label = " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in key) or "all jobs"
        mean = values.mean(0)
        ax.plot(steps, mean, "-", color=colour, label=f"{label} (n={len(values)})")
        if len(values) > 1:
            std = values.std(0, ddof=1)
            ax.fill_between(steps, mean - std, mean + std, color=colour, alpha=0.2)
    ax.set_xlabel("step")
    ax.set_ylabel("validation PSNR [dB]")
    ax.set_title("mean over seeds, band: +-1 standard deviation", fontsize=9)
    return save_figure(fig, ax, path)


def write_by_config(configs: list[dict], out: Path) -> None:
    """``by_config.csv`` (every column) and ``by_config.md`` (means +- 95% intervals and the paired comparison)."""
    with open(out / "by_config.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, list(configs[0].keys()))
        writer.writeheader()
        writer.writerows(configs)
    keys = [k for k in configs[0] if k not in ("n_seeds", "seeds") and not k.startswith(
        ("val_psnr", "train_val_gap", "seconds_to_", "test_psnr", "best", "paired", "diff_vs", "differs"))]

    def pm(row: dict, name: str) -> str:
        mean, ci = row.get(f"{name}_mean"), row.get(f"{name}_ci95")
        return "" if mean is None else f"{mean:.2f}" + ("" if ci is None else f" +- {ci:.2f}")

    def interval(row: dict) -> str:
        if row.get("best"):
            return "(best)"
        low, high = row.get("diff_vs_best_ci95_low"), row.get("diff_vs_best_ci95_high")
        if low is None:
            return "" if row.get("diff_vs_best_mean") is None else f"{row['diff_vs_best_mean']:+.2f} (one seed)"
        verdict = "differs" if row["differs_from_best"] else "not distinguishable"
        return f"{row['diff_vs_best_mean']:+.2f} [{low:+.2f}, {high:+.2f}] {verdict}"

    head = [*keys, "n_seeds", "val PSNR (mean +- 95% CI)", "train-val gap", "vs best, paired by seed [95% CI]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join([*(str(r[k]) for k in keys), str(r["n_seeds"]), pm(r, "val_psnr"),
                                 pm(r, "train_val_gap"), interval(r)]) + " |" for r in configs]
    lines += ["", "Jobs that differ only in `seed` are one configuration. Intervals are Student-t 95% intervals of "
              "the mean over seeds; the best configuration has the highest mean final validation PSNR, and each "
              "other is compared with it on the seeds both ran (difference of means; \"differs\" when the "
              "interval excludes 0). Test PSNR chose nothing."]
    (out / "by_config.md").write_text("\n".join(lines) + "\n")


def write_notes(out: Path, configs: list[dict], notes: list[str]) -> None:
    """What the report could not show, and which key to set, in ``summary.md`` before the selection note."""
    if all(c["n_seeds"] < 2 for c in configs):
        notes = [*notes, f"One seed per configuration: no spread or interval can be given; sweep `{SEED_KEY}` "
                         f"too (e.g. `{SEED_KEY}=0,1,2`) to tell differences from noise."]
    if not notes:
        return
    path = out / "summary.md"
    lines = path.read_text().splitlines()
    at = len(lines) - 1 if lines and lines[-1].startswith("Selection:") else len(lines)
    lines[at:at] = ["## Not shown", *(f"- {n}" for n in notes), ""]
    path.write_text("\n".join(lines) + "\n")


def log_to_wandb(sweep_dir: Path, rows: list[dict], plots: list[Path], project: str = "nerfexp",
                 mode: str | None = None) -> str:
    """Log the report table (``wandb.Table``) and plots to one W&B run; returns its id.

    The run is of job type ``report`` in the sweep's group (the sweep dir's name, as the training jobs); its
    files go to ``<sweep dir>/report/wandb``. ``mode`` null means ``$WANDB_MODE``, else offline, so this works
    without network and ``wandb sync`` uploads it later.
    """
    import imageio.v3 as iio
    import numpy as np
    import wandb

    from nerfexp.loggers.wandb_logger import resolve_mode

    mode = resolve_mode(mode)
    out = sweep_dir / "report"
    cols = list(rows[0].keys())
    run = wandb.init(project=project, group=sweep_dir.name, job_type="report", name=f"{sweep_dir.name}-report",
                     dir=str(out), mode=mode, reinit="finish_previous",
                     config={"sweep_dir": str(sweep_dir), "swept_keys": swept_keys(rows)},
                     settings=wandb.Settings(silent=True, console="off"))
    data = [[" ".join(r[c]) if c == "overrides" else r[c] for c in cols] for r in rows]
    run.log({"report/summary": wandb.Table(columns=cols, data=data),
             **{f"report/{p.stem}": wandb.Image(np.asarray(iio.imread(p))) for p in plots}})
    run_id = run.id
    run.finish()
    if mode == "offline":
        from nerfexp.loggers.wandb_offline import wait_until_complete

        wait_until_complete(Path(run.settings.sync_file))
    return run_id


def make_report(sweep_dir: Path, levels: tuple[float, ...] = DEFAULT_LEVELS, wandb: bool = False) -> list[dict]:
    """Write the report of ``sweep_dir`` into ``sweep_dir/report`` and return its rows (``wandb``: see
    :func:`log_to_wandb`)."""
    sweep_dir = Path(sweep_dir)
    jobs = job_dirs(sweep_dir)
    if not jobs:
        raise FileNotFoundError(f"{sweep_dir}: no job folder with a metrics.jsonl; is it a multirun dir?")
    rows = [summarize_job(j, levels) for j in jobs]
    out = sweep_dir / "report"
    write_tables(rows, out)
    plots, notes = write_plots(sweep_dir, rows, out)
    params = [parse_overrides(r["overrides"]) for r in rows]
    swept = swept_keys(rows)
    configs = by_config(rows, params, swept, levels)
    write_by_config(configs, out)
    seed_plot = write_seed_plot(sweep_dir, rows, params, swept, out / "psnr_vs_step_by_config.png")
    plots += [seed_plot] if seed_plot else []
    write_notes(out, configs, notes)
    if wandb:
        log_to_wandb(sweep_dir, rows, plots)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--levels", type=float, nargs="*", default=list(DEFAULT_LEVELS),
                        help="PSNR levels [dB] for the steps_to_*/seconds_to_* columns")
    parser.add_argument("--wandb", action="store_true",
                        help="also log the table and plots to W&B (offline unless WANDB_MODE=online)")
    args = parser.parse_args(argv)
    try:
        rows = make_report(args.sweep_dir, tuple(args.levels), wandb=args.wandb)
    except FileNotFoundError as exc:
        parser.exit(2, f"error: {exc}\n")
    print((args.sweep_dir / "report" / "summary.md").read_text())
    print(f"{len(rows)} jobs; report in {args.sweep_dir / 'report'}")


if __name__ == "__main__":
    main()
