"""NeuS end to end, as a user runs it: `model=neus` (the neus_demo preset) trains through train.py on the demo scene, evaluate.py
writes normal maps and mask IoU, and the mesh at the zero level set lies on the scene's analytic surface."""
from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
from plyfile import PlyData

from conftest import tiny_overrides
from nerfexp.data.demo import analytic_sdf
from test_cli import run

# the neus_demo preset on a smaller scene: 48x48 views, two CPU minutes of training
NEUS_SCENE = ["experiment=neus_demo", "dataset.resolution=48", "dataset.n_train=30", "trainer.max_steps=400",
              "trainer.val_every=200", "trainer.ckpt_every=200", "logger=csv"]


@pytest.fixture(scope="module")
def neus_run(demo_cache, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("neus") / "run"
    scene = [o for o in tiny_overrides(demo_cache) if o.startswith(("dataset.cache_dir", "dataset.n_val",
                                                                    "dataset.n_test", "eval."))]
    run(["train.py", *scene, *NEUS_SCENE, f"hydra.run.dir={run_dir}"])
    return run_dir


def test_neus_training_learns_the_demo_scene(neus_run):
    records = [json.loads(line) for line in (neus_run / "metrics.jsonl").read_text().splitlines()]
    val = [r["val_psnr"] for r in records if "val_psnr" in r]
    inv_s = [r["inv_s"] for r in records if "inv_s" in r]
    assert val[-1] > 19.0, val
    assert inv_s[-1] > 1.5 * inv_s[0], inv_s  # the surface sharpens as the SDF is learned
    metrics = json.loads((neus_run / "eval" / "metrics.json").read_text())
    assert metrics["psnr"] > 19.0
    assert metrics["mask_iou"] > 0.9  # opacity matches the objects' silhouettes
    normals = iio.imread(neus_run / "eval" / "normals" / "r_0.png")
    assert normals.shape == (48, 48, 3) and normals.std() > 10  # a real normal map, not a flat image
    panel = iio.imread(neus_run / "eval" / "compare" / "r_0.png")
    assert panel.shape == (48, 5 * 48 + 4 * 2, 3)  # gt | pred | depth | error | normals


def test_neus_mesh_lies_on_the_analytic_surface(neus_run):
    run(["evaluate.py", f"run={neus_run}", "metrics=false", "mesh=true", "mesh_resolution=96",
         "out_subdir=eval_mesh"])
    v = PlyData.read(str(neus_run / "eval_mesh" / "mesh.ply"))["vertex"]
    xyz = np.stack([v["x"], v["y"], v["z"]], -1)
    dist = np.abs(analytic_sdf(xyz))  # distance of each vertex to the true surface (scene units; scene radius 1.2)
    print(f"mesh vertices {len(xyz)}: distance to the analytic surface mean {dist.mean():.4f}, "
          f"95th percentile {np.percentile(dist, 95):.4f}")
    assert len(xyz) > 2000
    assert dist.mean() < MEAN_TOL and np.percentile(dist, 95) < P95_TOL, (dist.mean(), np.percentile(dist, 95))


MEAN_TOL, P95_TOL = 0.05, 0.15  # measured after 400 steps: see the closing figures in the issue notes
