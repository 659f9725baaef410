"""Shared fixtures: tiny generated scenes and configs composed as the command line would."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from nerfexp.runtime.allocator import keep_freed_memory

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf"
SHARED_DATA = REPO.parent / "shared" / "data"

keep_freed_memory()


def compose_train(overrides: list[str]) -> DictConfig:
    """The training config for ``overrides``, composed exactly as ``train.py`` composes it."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=overrides)


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory) -> Path:
    """A cache folder shared by the tests that generate demo scenes."""
    return tmp_path_factory.mktemp("demo_cache")


def tiny_overrides(cache: Path) -> list[str]:
    """A small demo scene and NeRF model (MLP, coarse + fine) that train in seconds on two CPU cores."""
    return ["model=nerf", f"dataset.cache_dir={cache}", "dataset.resolution=32", "dataset.n_train=20", "dataset.n_val=1",
            "dataset.n_test=2", "field.width=64", "sampler.n_samples=24", "sampler.n_importance=24",
            "trainer.batch_rays=512", "trainer.log_every=10", "logger=none", "eval.chunk=4096"]


def requires_shared(name: str):
    """Skip a test when ``../shared/data/<name>`` is absent (a fresh machine without the real datasets)."""
    return pytest.mark.skipif(not (SHARED_DATA / name).exists(),
                              reason=f"real dataset {SHARED_DATA / name} is not present on this machine")
