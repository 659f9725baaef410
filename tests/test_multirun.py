"""A 2x2 multirun through the command line, two jobs at a time with the joblib launcher and the W&B logger offline:
each job gets its own run dir and its own W&B run in the sweep's group, and the report sums the sweep up."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, tiny_overrides
from nerfexp.loggers.wandb_offline import offline_run_dirs, read_run

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
        metrics = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
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
    proc = subprocess.run([sys.executable, "-m", "nerfexp.studies.report", str(sweep)], cwd=REPO, capture_output=True,
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


# -- study presets (sweeps/*.yaml as the `sweeps` config group) and the W&B Sweeps spec ---------------------------
STUDIES = sorted(p.stem for p in (REPO / "sweeps").glob("*.yaml"))


def compose_with_hydra(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def first_values(params: dict) -> list[str]:
    """One ``key=value`` override per swept key: the first value of a list/choice/range, the start of an interval."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    out = []
    for o in parsed:
        if o.is_discrete_sweep():
            value = next(iter(o.sweep_string_iterator()))
        elif o.is_sweep_override():
            value = str(o.value().start)
        else:
            value = o.get_value_element_as_str()
        out.append(f"{o.key_or_group}={value}")
    return out


def test_studies_are_found():
    assert {"n_samples", "lr", "batch_rays", "encoder_sampler", "n_views", "optuna"} <= set(STUDIES)


@pytest.mark.parametrize("name", STUDIES)
def test_study_preset_composes_as_a_sweeps_group_and_its_jobs_compose(name):
    if name == "optuna":
        pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="hydra-optuna-sweeper is not installed")
    text = (REPO / "sweeps" / f"{name}.yaml").read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert f"python train.py -m +sweeps={name}" in header  # the command to run it is written at the top
    cfg = compose_with_hydra([f"+sweeps={name}"])
    # a group, not a plain value: without the search-path plugin `+sweeps=x` would silently set cfg.sweeps = "x"
    assert "sweeps" not in cfg
    params = dict(cfg.hydra.sweeper.params)
    assert params and f"/{name}-" in cfg.hydra.sweep.dir
    job = compose_with_hydra([f"+sweeps={name}", *first_values(params)])  # every swept key exists in the config
    assert "sweeps" not in job


def test_wandb_sweep_spec_runs_train_py_with_hydra_overrides():
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    spec = yaml.safe_load((REPO / "sweeps" / "wandb" / "lr_bayes.yaml").read_text())
    assert (REPO / spec["program"]).is_file()
    assert spec["command"][:4] == ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"]
    # what the agent passes: `key=value` for one sample of each parameter
    sample = {k: {"value": v["values"][0] if "values" in v else v["min"]} for k, v in spec["parameters"].items()}
    args = create_sweep_command_args({"args": sample})["args_no_hyphens"]
    assert args[0] == "optim.lr=0.0001"
    cfg = compose_with_hydra([*args, *spec["command"][4:]])
    assert cfg.optim.lr == 1e-4 and cfg.logger.mode == "online"
    assert cfg.trainer.batch_rays == spec["parameters"]["trainer.batch_rays"]["values"][0]
