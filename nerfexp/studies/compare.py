"""Compare runs: test metrics side by side and their convergence curves (``evaluate.py compare=[a,b,...]``)."""
from __future__ import annotations

import json
from pathlib import Path

from nerfexp.studies.report import read_jsonl, summarize_job, write_tables


def compare_runs(run_dirs: list[Path], out_dir: Path) -> dict:
    """Write ``summary.csv``/``summary.md`` (one row per run) and ``convergence.png`` into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dirs = [Path(p).expanduser().resolve() for p in run_dirs]
    for run in run_dirs:
        if not (run / "metrics.jsonl").is_file():
            raise FileNotFoundError(f"compare: {run} has no metrics.jsonl; is it a training run directory?")
    rows = []
    for run in run_dirs:
        row = summarize_job(run)
        row["job"] = str(run)
        eval_metrics = run / "eval" / "metrics.json"
        if eval_metrics.is_file():
            m = json.loads(eval_metrics.read_text())
            row.update(test_psnr=m.get("psnr"), test_ssim=m.get("ssim"), test_lpips=m.get("lpips"))
        rows.append(row)
    write_tables(rows, out_dir)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for run, row in zip(run_dirs, rows):
        recs = read_jsonl(run / "metrics.jsonl")
        val = [r for r in recs if r.get("val_psnr") is not None]
        label = f"{run.parent.name}/{run.name}"
        axes[0].plot([r["step"] for r in val], [r["val_psnr"] for r in val], "-o", ms=3, label=label)
        axes[1].plot([r.get("time_s") for r in val], [r["val_psnr"] for r in val], "-o", ms=3, label=label)
    axes[2].bar(range(len(rows)), [r["test_psnr"] or 0.0 for r in rows])
    axes[2].set_xticks(range(len(rows)), [f"{p.parent.name}/{p.name}" for p in run_dirs], rotation=20, fontsize=7)
    for ax, xl, yl in ((axes[0], "step", "val PSNR [dB]"), (axes[1], "training time [s]", "val PSNR [dB]"),
                       (axes[2], "run", "test PSNR [dB]")):
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_dir / "convergence.png", dpi=110)
    plt.close(fig)
    print((out_dir / "summary.md").read_text())
    return {"runs": [str(p) for p in run_dirs], "rows": rows, "out_dir": str(out_dir)}
