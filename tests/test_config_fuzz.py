"""Every numeric config key of every group, set to 0, -1, nan, inf or a string: the run either trains with finite
losses or stops before any work with one line that names the key. Never a traceback, never a non-finite step."""
from __future__ import annotations

import json
import math
import traceback
import types
import typing

import pytest
from omegaconf import DictConfig

from conftest import compose_train
from nerfexp.config import OWN_KEYS, _constructor_hints, user_error_message
from nerfexp.train import train

VALUES = ("0", "-1", "nan", "inf", "abc")
SMALL_SAMPLES = ["sampler.n_samples=8", "sampler.n_importance=8"]  # hierarchical and neus: 8 + 8 per ray
NERF = ["model=nerf", *SMALL_SAMPLES]
# one option per group that has its own keys; model=ngp (the default) brings the hash grid, grid field and
# occupancy sampler, model=neus the SDF field, sampler and renderer
OPTIONS = (NERF, [*NERF, "encoder=hashgrid"], [*NERF, "field=grid"],
           ["model=nerf", "sampler=stratified", "sampler.n_samples=8"],
           ["model=ngp", "sampler.diagonal_steps=64"], ["model=neus", "encoder=frequency", *SMALL_SAMPLES])
SMALL_GRID = ["encoder.position.n_levels=4", "encoder.position.log2_table_size=10",
              "encoder.position.finest_resolution=64"]


def tiny_run(cache) -> list[str]:
    """A run that trains two steps of 32 rays on a 16x16 demo scene and renders one validation view."""
    return [f"dataset.cache_dir={cache}", "dataset.resolution=16", "dataset.n_train=3", "dataset.n_val=1",
            "dataset.n_test=1",
            "trainer.batch_rays=32", "trainer.max_steps=2", "trainer.val_every=0", "trainer.eval_at_end=false",
            "trainer.plot_rays=false", "trainer.ckpt_every=0", "trainer.log_every=1", "logger=none",
            "eval.chunk=4096"]


def is_numeric(hint) -> bool:
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return any(a in (int, float) for a in args)


def numeric_keys(node: DictConfig, node_path: str) -> list[tuple[str, str]]:
    """``(constructor, dotted key)`` under ``node`` for each argument that is a number (nested nodes too)."""
    target = node.get("_target_")
    hints = _constructor_hints(target) if target else {}
    keys = []
    for key in node:
        if isinstance(node.get(key), DictConfig):
            keys += numeric_keys(node[key], f"{node_path}.{key}")
        elif key in hints and is_numeric(hints[key]):
            keys.append((f"{target}.{key}", f"{node_path}.{key}"))
    return keys


def cases() -> list[tuple[tuple[str, ...], str]]:
    """(option overrides, key) for every numeric argument of every component option, once each, and the keys
    no constructor owns (trainer, eval, optim)."""
    seen, out = set(), []
    for option in OPTIONS:
        overrides = option + (SMALL_GRID if "encoder=hashgrid" in option or "model=ngp" in option else [])
        cfg = compose_train(overrides)
        for group in ("dataset", "encoder", "field", "sampler", "renderer", "logger"):
            for argument, key in numeric_keys(cfg[group], group):
                if (argument, key) not in seen:
                    seen.add((argument, key))
                    out.append((tuple(overrides), key))
    out += [(tuple(NERF + (["optim=adamw"] if key == "optim.weight_decay" else [])), key)
            for key in OWN_KEYS]
    return out


CASES = cases()


def test_the_fuzz_covers_every_group():
    groups = {key.split(".")[0] for _, key in CASES}
    assert groups >= {"dataset", "encoder", "field", "sampler", "renderer", "trainer", "optim", "eval"}
    assert len(CASES) * len(VALUES) >= 400, len(CASES)


@pytest.mark.parametrize("overrides, key", CASES, ids=[f"{' '.join(o)}|{k}" for o, k in CASES])
def test_every_value_runs_clean_or_stops_with_one_line_naming_the_key(overrides, key, demo_cache, tmp_path):
    for value in VALUES:
        run_dir = tmp_path / f"v{VALUES.index(value)}"
        cfg = compose_train(tiny_run(demo_cache) + list(overrides) + [f"{key}={value}"])
        try:
            summary = train(cfg, run_dir)
        except Exception as exc:  # noqa: BLE001 - what matters is which ones the CLI would print as one line
            message = user_error_message(exc)
            assert message is not None, f"{key}={value}: a traceback, not one line:\n{traceback.format_exc()}"
            assert "\n" not in message
            leaf = key.rsplit(".", 1)[-1]
            assert leaf in message, f"{key}={value}: the message does not name the key: {message}"
            continue
        records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
        losses = [r["loss"] for r in records if "loss" in r]
        assert summary["skipped_steps"] == 0, f"{key}={value}: {summary['skipped_steps']} non-finite steps"
        assert losses and all(v is not None and math.isfinite(v) for v in losses), f"{key}={value}: {losses}"
        assert math.isfinite(summary["val_psnr"]), f"{key}={value}: val PSNR {summary['val_psnr']}"
