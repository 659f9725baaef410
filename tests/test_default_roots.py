"""`python train.py dataset=<name>` finds a scene where the original NeRF code keeps it (data/... under the working
directory), and says in one line where it looked when the folder is missing."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hydra.utils import instantiate

from conftest import REPO, SHARED_DATA, compose_train, requires_shared

LAYOUT = {"blender": "nerf_synthetic/lego", "llff": "nerf_llff_data/fern", "dtu": "dtu/dtu_scan24"}


@pytest.mark.parametrize("name", sorted(LAYOUT))
def test_default_root_is_the_original_layout_under_the_working_directory(name):
    assert compose_train([f"dataset={name}"]).dataset.root == f"data/{LAYOUT[name]}"


def test_a_missing_default_folder_is_one_line_naming_the_place_and_the_key(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), "dataset=llff", f"hydra.run.dir={tmp_path}/run"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "data/nerf_llff_data/fern" in errors[0] and str(tmp_path) in errors[0] and "dataset.root=" in errors[0]


@requires_shared("nerf_llff_data/fern")
def test_the_scene_is_read_from_data_under_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "data").symlink_to(SHARED_DATA, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    dataset = instantiate(compose_train(["dataset=llff"]).dataset)
    splits = [dataset.load(name) for name in ("train", "val", "test")]
    assert sum(len(split) for split in splits) == 20  # fern has 20 photos
    assert (splits[0].width, splits[0].height) == (504, 378)  # images_8
    assert os.path.samefile(dataset.root, SHARED_DATA / "nerf_llff_data/fern")
