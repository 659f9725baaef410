"""Convergence benchmark: budgets are respected, PSNR is recorded against time, summaries read the right rows."""
from __future__ import annotations

import csv

from conftest import tiny_overrides
from nerfexp.studies.bench import main, parse_configs, score_label, time_to


def test_time_to_level_is_the_first_crossing():
    rows = [{"time_s": 10.0, "psnr": 15.0}, {"time_s": 20.0, "psnr": 21.0},
            {"time_s": 30.0, "psnr": 20.5}, {"time_s": 40.0, "psnr": 25.5}]
    assert time_to(rows, 20.0) == 20.0
    assert time_to(rows, 25.0) == 40.0
    assert time_to(rows, 30.0) is None


def test_parse_configs_keeps_names_and_overrides():
    configs = parse_configs(['a=sampler.n_samples=8 optim.lr=1e-3', 'b="dataset.root=/x y"'])
    assert configs == {"a": ["sampler.n_samples=8", "optim.lr=1e-3"], "b": ["dataset.root=/x y"]}


def test_bench_runs_two_configs_for_their_budget(demo_cache, tmp_path):
    scene = " ".join(tiny_overrides(demo_cache))
    out = tmp_path / "bench"
    main(["--out", str(out), "--budget", "6", "--eval-every", "3", "--eval-views", "1", "--levels", "5", "60",
          "--config", f"small={scene} optim.lr=2e-3", "--config", f"other={scene} sampler.n_importance=0"])
    with open(out / "bench.csv") as f:
        rows = list(csv.DictReader(f))
    for name in ("small", "other"):
        mine = [r for r in rows if r["config"] == name]
        assert len(mine) >= 2
        times = [float(r["time_s"]) for r in mine]
        assert times == sorted(times) and 6.0 <= times[-1] < 6.0 + 5.0  # stops right after the budget
        steps = [int(r["step"]) for r in mine]
        assert steps == sorted(steps) and steps[0] > 0
    # speeds: the coarse pass queries 24 samples per ray, the fine pass those 24 and 24 more (NeRF's fine pass
    # takes the union): 72; without importance samples there is one pass of 24
    for name, per_ray in (("small", 72.0), ("other", 24.0)):
        for r in (r for r in rows if r["config"] == name):
            assert float(r["samples_per_ray"]) == per_ray
            assert abs(float(r["points_per_s"]) / float(r["rays_per_s"]) - per_ray) < 0.01 * per_ray
            assert float(r["render_rays_per_s"]) > 0
    assert (out / "bench.png").stat().st_size > 10_000
    assert {r["views"] for r in rows} == {"1/2"}  # the tiny scene has 2 test views; one was scored
    summary = (out / "summary.md").read_text().splitlines()
    assert len(summary) == 4 and "s to 60 dB" in summary[0]
    # a score over some test views is labelled as a subset, never as the test PSNR
    assert "test-subset PSNR (1 of 2 views)" in summary[0] and "final test PSNR" not in summary[0]
    assert summary[2].startswith("| small |") and summary[2].rstrip().endswith("| - |")  # 60 dB is never reached


def test_score_over_every_test_view_is_the_test_psnr():
    assert score_label([{"views": "25/25"}]) == "test PSNR"
    assert score_label([{"views": "5/25"}]) == "test-subset PSNR (5 of 25 views)"
