"""The command line as a user runs it: train.py writes a complete run dir, evaluate.py re-evaluates it."""
from __future__ import annotations

import json
import subprocess
import sys

import imageio.v3 as iio
import pytest
import yaml

from conftest import REPO, tiny_overrides


def run(args: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def trained_run(demo_cache, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    proc = run(["train.py", *tiny_overrides(demo_cache), "trainer.max_steps=60", "trainer.val_every=30",
                "trainer.ckpt_every=30", "logger=csv", f"hydra.run.dir={run_dir}"])
    return run_dir, proc


def test_train_writes_a_reproducible_run_dir(trained_run):
    run_dir, proc = trained_run
    assert "test PSNR:" in proc.stdout
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["trainer"]["max_steps"] == 60 and cfg["dataset"]["resolution"] == 32
    prov = json.loads((run_dir / "provenance.json").read_text())
    assert prov["packages"]["torch"].startswith("2.") and prov["device"] == "cpu" and "git_commit" in prov
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "val_psnr" in x] == [30, 60]
    assert any("test_psnr" in x for x in lines)
    assert (run_dir / "metrics.csv").read_text().startswith("step,")
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.pt")) == ["step_00000030.pt", "step_00000060.pt"]
    assert (run_dir / "val" / "step_00000060.png").is_file()
    summary = json.loads((run_dir / "summary.json").read_text())
    eval_metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    assert summary["steps"] == 60 and summary["test_psnr"] == pytest.approx(eval_metrics["psnr"])
    assert f"test PSNR: {summary['test_psnr']:.2f} dB" in proc.stdout


def test_evaluate_writes_metrics_predictions_and_panels(trained_run):
    run_dir, _ = trained_run
    train_metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    run(["evaluate.py", f"run={run_dir}", "out_subdir=eval_again"])
    out = run_dir / "eval_again"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_views"] == 2 and len(metrics["per_view"]) == 2
    assert [v["frame"] for v in metrics["per_view"]] == ["r_0", "r_1"]
    assert 0 < metrics["ssim"] <= 1 and "lpips" in metrics
    # evaluation is deterministic: the same checkpoint gives the same PSNR as at the end of training
    assert metrics["psnr"] == pytest.approx(train_metrics["psnr"], abs=1e-4)
    pred = iio.imread(out / "pred" / "r_0.png")
    assert pred.shape == (32, 32, 3)
    panel = iio.imread(out / "compare" / "r_1.png")
    assert panel.shape == (32, 4 * 32 + 3 * 2, 3)  # gt | pred | depth | error


def test_evaluate_accepts_dataset_overrides(trained_run):
    run_dir, _ = trained_run
    run(["evaluate.py", f"run={run_dir}", "out_subdir=eval_half", "dataset.downscale=2"])
    metrics = json.loads((run_dir / "eval_half" / "metrics.json").read_text())
    assert iio.imread(run_dir / "eval_half" / "pred" / "r_0.png").shape == (16, 16, 3)
    assert metrics["n_views"] == 2


def test_evaluate_names_a_bad_run_dir(tmp_path):
    proc = subprocess.run([sys.executable, "evaluate.py", f"run={tmp_path}"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0
    assert "config.yaml" in proc.stderr and str(tmp_path) in proc.stderr


def test_evaluate_writes_error_panels_contact_sheet_video_and_mesh(trained_run):
    run_dir, _ = trained_run
    run(["evaluate.py", f"run={run_dir}", "out_subdir=eval_outputs", "video=true", "video_frames=5",
         "video_scale=0.5", "mesh=true", "mesh_resolution=24", "mesh_threshold=auto"])
    out = run_dir / "eval_outputs"
    panel = iio.imread(out / "compare" / "r_0.png")
    assert panel.shape == (32, 4 * 32 + 3 * 2, 3)  # gt | pred | depth | error
    sheet = iio.imread(out / "contact_sheet.png")
    assert sheet.shape == (32, 2 * 32, 3)
    frames = iio.imread(out / "video" / "render_path.gif")
    assert frames.shape == (5, 16, 2 * 16 + 2, 3)  # colour | depth at half resolution
    import imageio.v2 as iio2

    with iio2.get_reader(out / "video" / "render_path.mp4") as reader:
        assert reader.count_frames() == 5
    ply = (out / "mesh.ply").read_bytes()
    assert ply.startswith(b"ply") and b"element vertex" in ply


def test_compare_runs_writes_table_and_plot(trained_run, tmp_path):
    run_dir, _ = trained_run
    run(["evaluate.py", f"compare=[{run_dir},{run_dir}]", f"hydra.run.dir={tmp_path}/h", f"run={run_dir}",
         "out_subdir=cmp"])
    out = run_dir / "cmp" / "compare"
    table = (out / "summary.csv").read_text().splitlines()
    assert len(table) == 3 and "test_psnr" in table[0]
    assert (out / "convergence.png").stat().st_size > 5000
