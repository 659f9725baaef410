"""The sweep report on a synthetic multirun dir with known metrics: rows, gap, time to PSNR levels, plots."""
from __future__ import annotations

import csv
import json

import imageio.v3 as iio
import pytest
import yaml

from nerfexp.loggers.wandb_offline import read_run
from nerfexp.studies.report import job_dirs, main, make_report, parse_overrides, swept_keys

# job -> (learning rate, [(step, time_s, train_psnr, val_psnr, rays_per_s)], test_psnr)
JOBS = {
    "0": ("1e-3", [(10, 1.0, 20.0, 19.0, 1000.0), (20, 2.0, 24.0, 21.0, 1200.0), (30, 3.0, 28.0, 26.0, 1100.0)], 25.5),
    "2": ("5e-4", [(10, 1.5, 16.0, 15.0, 900.0), (20, 3.0, 19.0, 18.0, 800.0), (30, 4.5, 22.0, 20.5, 1000.0)], 20.0),
    "10": ("2e-4", [(10, 2.0, 12.0, 11.0, 700.0), (20, 4.0, 13.0, 12.0, 700.0)], None),
}


def write_job(job_dir, lr, points, test_psnr, truncated_tail=False):
    (job_dir / ".hydra").mkdir(parents=True)
    (job_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"optim.lr={lr}", "trainer.batch_rays=512",
                                                                       "+sweeps=lr"]))
    lines = []
    for step, time_s, train, val, rays in points:
        lines.append({"step": step, "loss": 0.01, "train_psnr": train, "lr": float(lr), "rays_per_s": rays,
                      "time_s": time_s})
        lines.append({"step": step, "val_psnr": val, "time_s": time_s})
    if test_psnr is not None:
        lines.append({"step": points[-1][0], "test_psnr": test_psnr, "test_ssim": 0.9, "time_s": points[-1][1]})
    text = "".join(json.dumps(x) + "\n" for x in lines)
    if truncated_tail:  # a job killed while writing its last line
        text += '{"step": 30, "val_ps'
    (job_dir / "metrics.jsonl").write_text(text)


@pytest.fixture
def sweep(tmp_path):
    sweep_dir = tmp_path / "multirun" / "12-00-00"
    for name, (lr, points, test) in JOBS.items():
        write_job(sweep_dir / name, lr, points, test, truncated_tail=name == "10")
    (sweep_dir / "multirun.yaml").write_text("hydra: {}\n")
    (sweep_dir / "notajob").mkdir()
    return sweep_dir


def test_rows_are_one_per_job_in_job_number_order(sweep):
    assert [p.name for p in job_dirs(sweep)] == ["0", "2", "10"]
    rows = make_report(sweep, levels=(20.0, 25.0))
    assert [r["job"] for r in rows] == ["0", "2", "10"]
    assert rows[0]["overrides"] == ["optim.lr=1e-3", "trainer.batch_rays=512", "+sweeps=lr"]


def test_psnr_gap_and_speed_columns_have_the_known_values(sweep):
    first, second, third = make_report(sweep, levels=(20.0, 25.0))
    assert first["final_val_psnr"] == 26.0 and first["best_val_psnr"] == 26.0
    assert first["final_train_psnr"] == pytest.approx(24.0)  # mean of the last three train logs
    assert first["train_val_gap"] == pytest.approx(-2.0)
    assert first["test_psnr"] == 25.5 and first["test_ssim"] == 0.9
    assert first["steps"] == 30 and first["train_time_s"] == 3.0 and first["rays_per_s"] == 1100.0
    assert (first["steps_to_20dB"], first["seconds_to_20dB"]) == (20, 2.0)
    assert (first["steps_to_25dB"], first["seconds_to_25dB"]) == (30, 3.0)
    assert (second["steps_to_20dB"], second["seconds_to_20dB"]) == (30, 4.5)
    assert second["steps_to_25dB"] is None and second["seconds_to_25dB"] is None
    assert second["train_val_gap"] == pytest.approx(19.0 - 20.5)
    # the truncated last line of job 10 is skipped, the rest is read
    assert third["final_val_psnr"] == 12.0 and third["test_psnr"] is None and third["steps"] == 20


def test_swept_keys_are_those_that_differ_between_jobs(sweep):
    rows = make_report(sweep)
    assert swept_keys(rows) == ["optim.lr"]
    assert parse_overrides(["+sweeps=lr", "~trainer.threads", "a.b=c=d"]) == {"sweeps": "lr", "trainer.threads": "",
                                                                               "a.b": "c=d"}
    assert swept_keys([{"overrides": ["a=1", "b=2"]}, {"overrides": ["a=1"]}]) == ["b"]  # set in one job only


def test_override_values_with_spaces_and_equals_signs_survive():
    # what Hydra records for `dataset.root="/data/my scans"` and a quoted value holding '='
    parsed = parse_overrides(["dataset.root=/data/my scans", "logger.name='a=b'", "+x.y=1"])
    assert parsed == {"dataset.root": "/data/my scans", "logger.name": "'a=b'", "x.y": "1"}
    rows = [{"overrides": ["dataset.root=/data/my scans", "optim.lr=1e-3"]},
            {"overrides": ["dataset.root=/data/my scans", "optim.lr=2e-3"]}]
    assert swept_keys(rows) == ["optim.lr"]  # the path with a space is one unchanged value, not two keys


def test_tables_and_plots_are_written(sweep):
    make_report(sweep)
    out = sweep / "report"
    with open(out / "summary.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [r["job"] for r in table] == ["0", "2", "10"] and float(table[1]["final_val_psnr"]) == 20.5
    md = (out / "summary.md").read_text().splitlines()
    assert len(md) == 2 + 3 + 2 and md[0].startswith("| job | swept | final_val_psnr |")
    assert md[-1].startswith("Selection:") and "test_psnr` is rendered once" in md[-1]  # which metric chose
    assert md[2].startswith("| 0 | optim.lr=1e-3 | 26.00 |")
    for name in ("psnr_vs_step.png", "psnr_vs_time.png", "gap.png"):
        image = iio.imread(out / name)
        assert image.shape[0] > 300 and image[..., :3].std() > 5, name


def test_command_line_prints_the_table_and_names_a_wrong_dir(sweep, tmp_path, capsys):
    main([str(sweep), "--levels", "20"])
    printed = capsys.readouterr().out
    assert "steps_to_20dB" in printed and "steps_to_25dB" not in printed and "3 jobs" in printed
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "empty")])
    assert exc.value.code == 2
    assert "no job folder with a metrics.jsonl" in capsys.readouterr().err


def test_wandb_flag_logs_the_table_offline(sweep, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    make_report(sweep, wandb=True)
    run = read_run(sweep / "report")
    assert run.group == "12-00-00" and run.job_type == "report"
    logged = run.history[-1]
    assert logged["report/summary"]["_type"] == "table-file" and logged["report/summary"]["nrows"] == 3
    assert logged["report/gap"]["_type"] == "image-file"
    assert run.config["swept_keys"] == ["optim.lr"]
