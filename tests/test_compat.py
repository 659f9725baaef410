"""Run dirs written before the code moved into packages still evaluate: their config.yaml (kept verbatim in
tests/data/old_run_configs/) is brought to today's targets and keys, and builds the same model."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import compose_train, tiny_overrides
from nerfexp.compat import upgrade_run_config
from nerfexp.config import validate_config
from nerfexp import evaluate as evaluate_module
from nerfexp.evaluate import evaluate_run
from nerfexp.pipelines.build import build_pipeline
from nerfexp.train import train

OLD = Path(__file__).parent / "data" / "old_run_configs"


def old_config(name: str, **subst: str):
    text = (OLD / f"{name}.yaml").read_text()
    for key, value in subst.items():
        text = text.replace(key, value)
    return OmegaConf.create(text)


@pytest.mark.parametrize("name, today", [
    ("neus_demo", ["experiment=neus_demo"]),
    ("lego_fast", ["experiment=lego_fast", "encoder.position.finest_resolution=2048",  # the old run's; the preset
                   "encoder.position.log2_table_size=17",  # has 512, 2^18 and 4096 rays x 64 since
                   "sampler.max_batch_samples=131072"]),
    ("lego_tiny", ["experiment=lego_tiny", "sampler.n_samples=32"]),  # the old run's; the preset has 16 since
])
def test_old_configs_build_the_model_of_today_with_the_same_weights(name, today):
    old = upgrade_run_config(old_config(name))
    new = compose_train(today)
    validate_config(old)
    # the scene extent moved to dataset.bound, with the value the old run used for it
    assert old.dataset.bound == new.dataset.bound
    for group in ("dataset", "encoder", "field", "sampler", "renderer", "logger"):
        old_keys = OmegaConf.to_container(old[group], resolve=True)
        new_keys = OmegaConf.to_container(new[group], resolve=True)
        assert old_keys == new_keys, group
    torch.manual_seed(0)
    old_pipeline = build_pipeline(old)
    new_pipeline = build_pipeline(new)
    # a checkpoint of the old run loads into the pipeline built from its upgraded config
    new_pipeline.load_state_dict(old_pipeline.state_dict())
    assert old_pipeline.state_dict().keys() == new_pipeline.state_dict().keys()


def test_an_old_run_dir_evaluates(demo_cache, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    cfg = compose_train(tiny_overrides(demo_cache) + ["trainer.max_steps=20", "trainer.val_every=0",
                                                      "trainer.eval_at_end=true", "logger=csv"])
    summary = train(cfg, run_dir)
    # the same run as an earlier version wrote its config.yaml: old targets, no dataset.bound, optim without class
    (run_dir / "config.yaml").write_text((OLD / "nerf_demo.yaml").read_text().replace("CACHE", str(demo_cache)))
    conf = Path(__file__).resolve().parent.parent / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        ecfg = compose("evaluate", overrides=[f"run={run_dir}", "out_subdir=eval_again"])
    chunks = []
    real = evaluate_module.render_sharded
    monkeypatch.setattr(evaluate_module, "render_sharded", lambda *a: chunks.append(a[4]) or real(*a))
    result = evaluate_run(ecfg)
    metrics = json.loads((run_dir / "eval_again" / "metrics.json").read_text())
    assert metrics["n_views"] == 2
    assert chunks == [4096]  # evaluate.py's chunk=null renders in the run's eval.chunk (its model's default)
    # the same weights under the same model: the same test PSNR as the run's own evaluation at the end
    assert abs(metrics["psnr"] - summary["test_psnr"]) < 1e-3, (metrics["psnr"], summary["test_psnr"], result)
