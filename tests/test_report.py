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
    # table, then what cannot be shown (one seed per configuration: no interval), then the selection note
    assert len(md) == 2 + 3 + 1 + 3 + 1 and md[0].startswith("| job | swept | final_val_psnr |")
    assert md[6] == "## Not shown" and "`seed=0,1,2`" in md[7]
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


# seed x lr study: final validation PSNR of each job (seed -> value), per learning rate
STUDY = {"1e-3": {0: 25.0, 1: 26.0, 2: 27.0}, "3e-3": {0: 24.0, 1: 24.8, 2: 26.2}, "1e-2": {0: 25.5, 1: 25.5, 2: 26.4}}


@pytest.fixture
def seed_sweep(tmp_path):
    sweep_dir = tmp_path / "multirun" / "13-00-00"
    num = 0
    for lr, by_seed in STUDY.items():
        for seed, final in by_seed.items():
            job = sweep_dir / str(num)
            (job / ".hydra").mkdir(parents=True)
            (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={seed}", f"optim.lr={lr}"]))
            lines = [{"step": 50, "train_psnr": final + 1.0, "time_s": 5.0}, {"step": 50, "val_psnr": final - 3.0,
                                                                               "time_s": 5.0},
                     {"step": 100, "train_psnr": final + 1.0, "time_s": 10.0 + seed},
                     {"step": 100, "val_psnr": final, "time_s": 10.0 + seed}]
            (job / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
            num += 1
    return sweep_dir


def test_seeds_are_pooled_per_configuration_with_t_intervals_and_paired_differences(seed_sweep):
    from nerfexp.studies.seeds import t_halfwidth

    # Student-t: n=3, sd=1 -> t(0.975, 2) = 4.3027 over sqrt(3)
    assert t_halfwidth([1.0, 2.0, 3.0]) == pytest.approx(4.302653 / 3 ** 0.5, rel=1e-5)
    make_report(seed_sweep, levels=(26.0,))
    with open(seed_sweep / "report" / "by_config.csv", newline="") as fh:
        rows = {r["optim.lr"]: r for r in csv.DictReader(fh)}
    assert set(rows) == set(STUDY) and "seed" not in next(iter(rows.values()))
    best = rows["1e-3"]
    assert best["best"] == "True" and best["n_seeds"] == "3" and best["seeds"] == "0 1 2"
    assert float(best["val_psnr_mean"]) == pytest.approx(26.0)
    assert float(best["val_psnr_std"]) == pytest.approx(1.0)
    assert float(best["val_psnr_ci95"]) == pytest.approx(4.302653 / 3 ** 0.5, rel=1e-5)
    assert float(best["train_val_gap_mean"]) == pytest.approx(1.0)
    # seconds to 26 dB: seeds 1 (26 dB, at 10 + 1 s) and 2 (27 dB, at 12 s) reached it; seed 0 (25 dB) did not
    assert float(best["seconds_to_26dB_mean"]) == pytest.approx(11.5) and best["seconds_to_26dB_reached"] == "2/3"
    # 3e-3 - 1e-3 per seed: -1.0, -1.2, -0.8: mean -1, sd 0.2, interval excludes 0
    worse = rows["3e-3"]
    assert float(worse["diff_vs_best_mean"]) == pytest.approx(-1.0)
    half = 4.302653 * 0.2 / 3 ** 0.5
    assert float(worse["diff_vs_best_ci95_low"]) == pytest.approx(-1.0 - half, rel=1e-4)
    assert float(worse["diff_vs_best_ci95_high"]) == pytest.approx(-1.0 + half, rel=1e-4)
    assert worse["differs_from_best"] == "True"
    # 1e-2 - 1e-3 per seed: +0.5, -0.5, -0.6: an interval around 0, not a real difference
    assert rows["1e-2"]["differs_from_best"] == "False"
    md = (seed_sweep / "report" / "by_config.md").read_text()
    assert "not distinguishable" in md and "(best)" in md
    band = iio.imread(seed_sweep / "report" / "psnr_vs_step_by_config.png")
    assert band.shape[0] > 300 and band[..., :3].std() > 5


def test_a_sweep_without_validation_curves_draws_no_empty_plot(tmp_path):
    """Jobs with only the final validation: no validation-curve plot; training PSNR instead, labelled so."""
    sweep_dir = tmp_path / "multirun" / "14-00-00"
    for num, lr in enumerate(("1e-3", "3e-3")):
        job = sweep_dir / str(num)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"optim.lr={lr}", "trainer.max_steps=60"]))
        lines = [{"step": s, "train_psnr": 10.0 + s / 10 + num, "time_s": s / 10} for s in (20, 40, 60)]
        lines.append({"step": 60, "val_psnr": 14.0 + num, "time_s": 6.0})
        (job / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    make_report(sweep_dir)
    out = sweep_dir / "report"
    assert not (out / "psnr_vs_step.png").exists() and not (out / "psnr_vs_time.png").exists()
    assert not (out / "psnr_vs_step_by_config.png").exists()
    image = iio.imread(out / "train_psnr_vs_step.png")
    assert image[..., :3].std() > 5
    md = (out / "summary.md").read_text()
    assert "`trainer.val_every`" in md and "train_psnr_vs_step.png" in md
