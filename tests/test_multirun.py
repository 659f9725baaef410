"""A 2x2 multirun through the command line, two jobs at a time with the joblib launcher and the W&B logger offline:
each job gets its own run dir and its own W&B run in the sweep's group, and the report sums the sweep up."""
from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, tiny_overrides
from nerfexp.wandb_offline import offline_run_dirs, read_run

pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="hydra-joblib-launcher is not installed")

SWEPT = {"sampler.n_samples": ("16", "24"), "trainer.batch_rays": ("256", "512")}


def job_env() -> dict:
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("WANDB_DIR", None)
    return env


@pytest.fixture(scope="module")
def sweep(demo_cache, tmp_path_factory):
    sweep_dir = tmp_path_factory.mktemp("multirun") / "sweep-2x2"
    fixed = [o for o in tiny_overrides(demo_cache) if o.split("=")[0] not in {*SWEPT, "logger"}]
    args = [sys.executable, "train.py", "-m", *fixed, "trainer.max_steps=20", "trainer.val_every=10",
            "trainer.ckpt_every=0", "eval.max_views=1", "trainer.threads=1",
            *(f"{key}={','.join(values)}" for key, values in SWEPT.items()),
            "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "logger=wandb", f"hydra.sweep.dir={sweep_dir}"]
    proc = subprocess.run(args, cwd=REPO, env=job_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep_dir


def test_each_job_has_its_own_run_dir_metrics_and_wandb_run(sweep):
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    seen = set()
    for job in jobs:
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        swept = {o.split("=")[0]: o.split("=")[1] for o in overrides if o.split("=")[0] in SWEPT}
        seen.add(tuple(sorted(swept.items())))
        metrics = [yaml.safe_load(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
        assert [m["step"] for m in metrics if "val_psnr" in m] == [10, 20]
        assert len(offline_run_dirs(job)) == 1  # no other job's run leaked into this dir
        run = read_run(job)
        assert run.exit_code == 0
        assert run.group == sweep.name and run.name == f"{sweep.name}-{job.name}"
        assert {f"{k}={v}" for k, v in swept.items()} <= set(run.tags)
        assert str(run.config["sampler"]["n_samples"]) == swept["sampler.n_samples"]
        assert str(run.config["trainer"]["batch_rays"]) == swept["trainer.batch_rays"]
        history = run.history
        assert [r["_step"] for r in history if "val_psnr" in r] == [10, 20]
        assert "val/panel" in history[-1] and "test_psnr" in history[-1]  # nothing logged at the end was dropped
    assert len(seen) == 4  # the four combinations, each once
    assert len({read_run(job).run_id for job in jobs}) == 4


def test_report_sums_up_the_sweep(sweep):
    proc = subprocess.run([sys.executable, "-m", "nerfexp.report", str(sweep)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 jobs" in proc.stdout
    with open(sweep / "report" / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["job"] for r in rows] == ["0", "1", "2", "3"]
    assert all(float(r["final_val_psnr"]) > 0 and int(r["steps"]) == 20 for r in rows)
    md = (sweep / "report" / "summary.md").read_text()
    assert "sampler.n_samples=16 trainer.batch_rays=256" in md
    for name in ("psnr_vs_step.png", "psnr_vs_time.png", "gap.png"):
        assert (sweep / "report" / name).stat().st_size > 10_000
