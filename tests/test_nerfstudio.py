"""dataset=nerfstudio and dataset=colmap: a scene written as transforms.json reads back as the same cameras, inside
the box, with disjoint splits; what the ray generator cannot model stops with one line."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nerfexp.data.capture import write_transforms
from nerfexp.data.demo import DemoSceneSpec, focal_length
from nerfexp.data.images import DatasetError
from nerfexp.data.nerfstudio import NerfstudioDataset
from nerfexp.data.writers import surface_depth_bounds, surrounding_poses, write_llff_scene

SPEC = DemoSceneSpec(resolution=24, supersample=1)
N = 17


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """The demo scene from N surrounding cameras, as python -m nerfexp.process writes a capture."""
    root = tmp_path_factory.mktemp("capture")
    c2ws = surrounding_poses(SPEC, N)
    write_llff_scene(root, SPEC, c2ws=c2ws)
    bounds = surface_depth_bounds(SPEC, c2ws)
    f = focal_length(SPEC)
    cams = {f"image{k:03d}.png": {"c2w": c2ws[k], "fx": f, "fy": f, "cx": 12.0, "cy": 12.0, "w": 24, "h": 24,
                                  "bounds": bounds[k]} for k in range(N)}
    write_transforms(cams, root / "transforms.json")
    return root, c2ws, bounds


def test_cameras_read_back_normalised_into_the_box(capture):
    root, c2ws, bounds = capture
    data = NerfstudioDataset(root, bound=1.5)
    back = data.to_world @ data.frames.c2w  # normalised -> the capture's frame
    back[:, :3, :3] /= data.to_world[0, 0]
    np.testing.assert_allclose(back, c2ws, atol=1e-9)
    centres = data.frames.c2w[:, :3, 3]
    assert np.abs(centres).max() <= 0.9 * 1.5 + 1e-9  # cameras inside the box
    content = centres - data.frames.c2w[:, :3, 2] * data.frames.bounds[:, 1:]
    assert np.abs(content).max() <= 0.9 * 1.5 + 1e-9  # and the far end of what each one sees
    scale = 1.0 / data.to_world[0, 0]
    assert data.near == pytest.approx(0.9 * bounds[:, 0].min() * scale)
    assert data.far == pytest.approx(1.1 * bounds[:, 1].max() * scale)


def test_splits_are_disjoint_and_rays_leave_through_the_image_centre_along_minus_z(capture):
    root, _, _ = capture
    data = NerfstudioDataset(root)
    splits = {name: data.load(name) for name in ("train", "val", "test")}
    names = {name: set(s.names) for name, s in splits.items()}
    assert names["test"] == {f"image{k:03d}.png" for k in range(0, N, 8)}
    assert not names["train"] & names["val"] and not names["train"] & names["test"] and not names["val"] & names["test"]
    assert sum(len(s) for s in splits.values()) == N and len(names["val"]) == 2
    train = splits["train"]
    img = torch.zeros(1, dtype=torch.long)
    rays = train.pixel_rays(img, torch.tensor([12]), torch.tensor([12]))  # pixel (12, 12): centre at 12.5
    forward = -train.c2w[0, :3, 2]
    cos = torch.nn.functional.cosine_similarity(rays.directions[0], forward, dim=0)
    assert float(cos) > 0.999
    assert train.unbounded and train.bounding_box == 1.0


def test_what_rays_cannot_model_stops_with_one_line(capture, tmp_path):
    root, _, _ = capture
    meta = json.loads((root / "transforms.json").read_text())
    (tmp_path / "images").symlink_to(root / "images")
    (tmp_path / "transforms.json").write_text(json.dumps({**meta, "k1": 0.05}))
    with pytest.raises(DatasetError, match=r"lens distortion \(k1\).*undistort"):
        NerfstudioDataset(tmp_path)
    frames = [dict(f, fl_x=30.0 + k) for k, f in enumerate(meta["frames"])]
    (tmp_path / "transforms.json").write_text(json.dumps({**meta, "frames": frames}))
    with pytest.raises(DatasetError, match="different intrinsics; dataset.ndc=true maps rays with one camera"):
        NerfstudioDataset(tmp_path, ndc=True)
    (tmp_path / "transforms.json").write_text(json.dumps({**meta, "frames": meta["frames"] + [
        {"file_path": "images/nope.png", "transform_matrix": np.eye(4).tolist()}]}))
    with pytest.raises(DatasetError, match="nope.png: image file listed in .*transforms.json is missing"):
        NerfstudioDataset(tmp_path)


@pytest.mark.parametrize("keys", [{"ndc": True}, {"ndc": False, "spherify": True}], ids=["ndc", "spherify"])
def test_ndc_and_spherify_normalise_as_llff_does(capture, keys):
    """The same capture as transforms.json (dataset=nerfstudio) and as poses_bounds.npy (dataset=llff): the same
    scene-frame cameras and ray ranges."""
    from nerfexp.data.capture import write_poses_bounds
    from nerfexp.data.llff import LLFFDataset

    root, c2ws, bounds = capture
    f = focal_length(SPEC)
    cams = {f"image{k:03d}.png": {"c2w": c2ws[k], "fx": f, "fy": f, "cx": 12.0, "cy": 12.0, "w": 24, "h": 24,
                                  "bounds": bounds[k]} for k in range(N)}
    write_poses_bounds(cams, root / "poses_bounds.npy")
    ours = NerfstudioDataset(root, **keys)
    llff = LLFFDataset(root, factor=None, llffhold=8, **keys)
    np.testing.assert_allclose(ours.frames.c2w, llff.c2w, atol=1e-6)
    assert (ours.near, ours.far) == pytest.approx((llff.near, llff.far))
    test = ours.load("test")
    assert test.ndc == keys["ndc"] and test.bounding_box is None
    assert test.names == [f"image{k:03d}.png" for k in range(0, N, 8)]
    with pytest.raises(ValueError, match="NDC cannot represent"):
        NerfstudioDataset(root, ndc=True, spherify=True)


def test_per_frame_intrinsics_cast_each_frames_own_rays(capture, tmp_path):
    """instant-ngp's per-frame fl_x / cx: written, read back, and each view's rays go through its own pixels."""
    root, _, _ = capture
    meta = json.loads((root / "transforms.json").read_text())
    (tmp_path / "images").symlink_to(root / "images")
    frames = [dict(f, fl_x=20.0 + k, fl_y=21.0 + k, cx=11.0 + 0.1 * k) for k, f in enumerate(meta["frames"])]
    (tmp_path / "transforms.json").write_text(json.dumps({**meta, "frames": frames}))
    data = NerfstudioDataset(tmp_path, downscale=2)
    test = data.load("test")  # frames 0, 8, 16
    for row, k in enumerate((0, 8, 16)):
        fx, fy, cx, cy = (20.0 + k) / 2, (21.0 + k) / 2, (11.0 + 0.1 * k) / 2, 12.0 / 2
        image = torch.tensor([row])
        rays = test.pixel_rays(image, torch.tensor([0]), torch.tensor([0]))  # the corner pixel, centre (0.5, 0.5)
        local = test.c2w[row, :3, :3].T @ rays.directions[0]
        expected = torch.tensor([(0.5 - cx) / fx, -(0.5 - cy) / fy, -1.0])
        assert torch.allclose(local / -local[2], expected, atol=1e-5), (k, local, expected)


def test_each_view_samples_its_own_depth_range(capture):
    root, _, bounds = capture
    data = NerfstudioDataset(root)
    scale = 1.0 / data.to_world[0, 0]
    train = data.load("train")
    names = [int(n[5:8]) for n in train.names]
    ranges = []
    for row, k in enumerate(names[:4]):
        rays = train.pixel_rays(torch.tensor([row]), torch.tensor([12]), torch.tensor([12]))
        assert float(rays.near[0]) >= 0.9 * bounds[k, 0] * scale - 1e-5  # the box may start the ray later
        assert float(rays.far[0]) <= 1.1 * bounds[k, 1] * scale + 1e-5
        ranges.append((float(rays.near[0]), float(rays.far[0])))
    assert len(set(ranges)) > 1  # not one range for all
    one_range = NerfstudioDataset(root, per_view_bounds=False).load("train")
    assert one_range.view_near_far is None and train.view_near_far is not None


def test_aabb_scale_sizes_the_box_around_the_cameras(capture, tmp_path):
    """Without depths, instant-ngp's aabb_scale says how many camera extents the scene box spans."""
    root, c2ws, _ = capture
    meta = json.loads((root / "transforms.json").read_text())
    (tmp_path / "images").symlink_to(root / "images")
    frames = [{k: v for k, v in f.items() if k != "colmap_near_far"} for f in meta["frames"]]
    scales = {}
    for aabb in (None, 8):
        extra = {} if aabb is None else {"aabb_scale": aabb}
        (tmp_path / "transforms.json").write_text(json.dumps({**meta, **extra, "frames": frames}))
        data = NerfstudioDataset(tmp_path)
        scales[aabb] = data.to_world[0, 0]
        assert data.frames.aabb_scale == aabb
    assert scales[8] / scales[None] == pytest.approx(4.0)  # 8 camera extents instead of the default 2
