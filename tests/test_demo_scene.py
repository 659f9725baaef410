"""Tests of the procedural demo scene (nerfexp.data.demo): files, cameras, geometry, shading and caching."""
from __future__ import annotations

import json
import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from nerfexp.data import demo
from nerfexp.data.demo import (
    COMPLETE_MARKER,
    DemoSceneSpec,
    analytic_sdf,
    camera_poses,
    ensure_demo_scene,
    focal_length,
    render_views,
    trace_rays,
    write_demo_scene,
)

TINY = DemoSceneSpec(n_train=3, n_val=1, n_test=2, resolution=16, supersample=2)


def test_written_files_follow_blender_format(tmp_path: Path):
    out = write_demo_scene(tmp_path / "scene", TINY)
    assert out == tmp_path / "scene"
    assert (out / COMPLETE_MARKER).is_file() and (out / "scene.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["scene"], "temporary folders were left behind"
    for split, n in (("train", 3), ("val", 1), ("test", 2)):
        meta = json.loads((out / f"transforms_{split}.json").read_text())
        assert meta["camera_angle_x"] == pytest.approx(TINY.camera_angle_x)
        assert len(meta["frames"]) == n
        np.testing.assert_allclose(np.array([f["transform_matrix"] for f in meta["frames"]]),
                                   camera_poses(TINY, split), atol=1e-12)
        for k, frame in enumerate(meta["frames"]):
            assert frame["file_path"] == f"./{split}/r_{k}"
            img = iio.imread(out / f"{frame['file_path']}.png")
            assert img.shape == (16, 16, 4) and img.dtype == np.uint8
            for corner in (img[0, 0], img[0, -1], img[-1, 0], img[-1, -1]):
                assert corner[3] == 0 and not corner[:3].any()
            assert img[8, 8, 3] == 255  # centre looks at the origin, inside the big sphere
            assert (img[..., 3] == 0).sum() > 0.2 * img[..., 3].size  # empty space around the objects


def test_camera_geometry():
    spec = DemoSceneSpec(n_train=40, n_val=4, n_test=8, radius=3.5)
    all_pos = {}
    for split, n in (("train", 40), ("val", 4), ("test", 8)):
        c2w = camera_poses(spec, split)
        assert c2w.shape == (n, 4, 4) and c2w.dtype == np.float64
        rot, pos = c2w[:, :3, :3], c2w[:, :3, 3]
        np.testing.assert_allclose(rot.transpose(0, 2, 1) @ rot, np.broadcast_to(np.eye(3), rot.shape), atol=1e-12)
        np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-12)
        np.testing.assert_allclose(c2w[:, 3], np.broadcast_to([0.0, 0.0, 0.0, 1.0], (n, 4)))
        np.testing.assert_allclose(np.linalg.norm(pos, axis=-1), spec.radius, atol=1e-12)
        # -z looks at the origin.
        np.testing.assert_allclose(-rot[:, :, 2], -pos / spec.radius, atol=1e-6)
        # world up is +z: camera x is horizontal and camera y leans up; upper hemisphere, 10..70 degrees.
        np.testing.assert_allclose(rot[:, 2, 0], 0.0, atol=1e-12)
        assert (rot[:, 2, 1] > 0).all()
        elev = np.degrees(np.arcsin(pos[:, 2] / spec.radius))
        assert (elev >= 10.0 - 1e-9).all() and (elev <= 70.0 + 1e-9).all()
        all_pos[split] = pos
    # held-out views differ from training views; seeds change training views; deterministic.
    d = np.linalg.norm(all_pos["train"][:, None] - np.concatenate([all_pos["val"], all_pos["test"]])[None], axis=-1)
    assert d.min() > 1e-3
    np.testing.assert_array_equal(camera_poses(spec, "train"), camera_poses(spec, "train"))
    other = DemoSceneSpec(n_train=40, radius=3.5, seed=1)
    assert not np.allclose(camera_poses(other, "train"), camera_poses(spec, "train"))
    with pytest.raises(ValueError):
        camera_poses(spec, "bogus")


def test_analytic_sdf_values():
    assert analytic_sdf(np.zeros(3)) < 0  # origin is inside the big sphere
    far = np.array([[10.0, 0.0, 0.0], [0.0, 0.0, 20.0]])
    sdf = analytic_sdf(far)
    assert sdf.shape == (2,)
    # Everything is inside the ball of radius SCENE_RADIUS: the distance is at least |p| - SCENE_RADIUS.
    assert (sdf >= np.linalg.norm(far, axis=-1) - demo.SCENE_RADIUS - 1e-12).all()
    assert (sdf <= np.linalg.norm(far, axis=-1)).all()
    grid = np.stack(np.meshgrid(*[np.linspace(-2, 2, 9)] * 3, indexing="ij"), -1)
    assert analytic_sdf(grid).shape == (9, 9, 9)


def test_centre_ray_depth_matches_sdf_zero_crossing():
    spec = DemoSceneSpec(n_train=10)
    c2w = np.concatenate([camera_poses(spec, "train"), camera_poses(spec, "test")])
    origins = c2w[:, :3, 3]
    dirs = -c2w[:, :3, 2] * 1.7  # non-unit directions: t is in units of the given direction
    rgb, alpha, t = trace_rays(origins, dirs)
    assert (alpha == 1.0).all() and np.isfinite(t).all()
    hits = origins + t[:, None] * dirs
    np.testing.assert_allclose(analytic_sdf(hits), 0.0, atol=1e-9)
    # The SDF is positive all along the ray before the hit and negative just after it (first crossing).
    s = np.linspace(0.0, 1.0, 2001)[:-1]
    before = origins[:, None] + (t[:, None, None] * s[None, :, None]) * dirs[:, None]
    assert (analytic_sdf(before) > 0).all()
    after = origins + (t + 1e-4)[:, None] * dirs
    assert (analytic_sdf(after) < 0).all()
    # Every pixel ray of a view: hits lie on the surface, the SDF stays positive before them, misses never cross it.
    o, d = demo.pixel_rays(DemoSceneSpec(resolution=24), c2w[0], supersample=1)
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    rgb, alpha, t = trace_rays(o, d)
    hit = alpha == 1.0
    assert 0.1 < hit.mean() < 0.9
    np.testing.assert_allclose(analytic_sdf(o[hit] + t[hit, None] * d[hit]), 0.0, atol=1e-9)
    t_end = np.where(hit, t, 7.0)[:, None, None]
    s = np.linspace(0.0, 1.0, 801)[:-1]
    assert (analytic_sdf(o[:, None] + (t_end * s[None, :, None]) * d[:, None]) > 0).all()
    # A ray that misses everything.
    rgb, alpha, t = trace_rays(np.array([0.0, 0.0, 5.0]), np.array([0.0, 1.0, 0.0]))
    assert alpha == 0.0 and np.isinf(t) and not rgb.any()


def test_render_uses_documented_pixel_convention():
    spec = DemoSceneSpec(resolution=15, supersample=1)
    c2w = camera_poses(spec, "test")[1]
    img = render_views(spec, c2w[None])[0]
    assert img.shape == (15, 15, 4) and img.dtype == np.float32
    f = focal_length(spec)
    assert f == pytest.approx(0.5 * 15 / math.tan(0.5 * spec.camera_angle_x))
    w = spec.resolution
    for i, j in [(7, 7), (3, 9), (10, 4), (5, 6), (9, 11), (0, 0)]:
        u, v = i + 0.5, j + 0.5
        d = c2w[:3, :3] @ np.array([(u - w / 2) / f, -(v - w / 2) / f, -1.0])
        rgb, alpha, _ = trace_rays(c2w[:3, 3], d)
        assert img[j, i, 3] == alpha
        np.testing.assert_allclose(img[j, i, :3], rgb * alpha, atol=1e-6)
    # The centre pixel of an odd image is the exact optical axis, which looks at the origin.
    rgb, alpha, _ = trace_rays(c2w[:3, 3], -c2w[:3, 2])
    np.testing.assert_allclose(img[7, 7, :3], rgb, atol=1e-6)


def test_supersampling_is_premultiplied_area_average():
    coarse = DemoSceneSpec(resolution=12, supersample=2)
    fine = DemoSceneSpec(resolution=24, supersample=1)
    c2w = camera_poses(coarse, "val")[:2]
    a = render_views(coarse, c2w).astype(np.float64)
    b = render_views(fine, c2w).astype(np.float64)
    b_pre = np.concatenate([b[..., :3] * b[..., 3:], b[..., 3:]], -1).reshape(2, 12, 2, 12, 2, 4).mean(axis=(2, 4))
    a_pre = np.concatenate([a[..., :3] * a[..., 3:], a[..., 3:]], -1)
    np.testing.assert_allclose(a_pre, b_pre, atol=1e-6)
    alpha = a[..., 3]
    assert ((alpha > 0) & (alpha < 1)).any(), "edge pixels should have fractional alpha"
    assert set(np.unique(alpha)) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    assert (a[..., :3][alpha == 0] == 0).all()


def test_scene_is_textured_and_view_dependent():
    spec = DemoSceneSpec(resolution=32)
    img = render_views(spec, camera_poses(spec, "test")[:2])
    obj = img[..., 3] == 1.0
    assert obj.sum() > 200
    assert img[..., :3][obj].std(axis=0).min() > 0.08
    # The top of the big glossy sphere seen along the mirror direction of the light vs. from elsewhere.
    center, radius = demo._SPHERES[0]
    point, normal = center + np.array([0.0, 0.0, radius]), np.array([0.0, 0.0, 1.0])
    light = demo._LIGHT_DIR
    mirror = 2.0 * normal.dot(light) * normal - light
    other = np.array([-light[0], -light[1], 0.3 * light[2]])
    other /= np.linalg.norm(other)
    views = np.stack([mirror, other])
    rgb, alpha, t = trace_rays(point + 3.0 * views, -views)
    assert (alpha == 1).all()
    np.testing.assert_allclose(t, 3.0, atol=1e-9)  # both rays hit the same surface point
    assert np.abs(rgb[0] - rgb[1]).max() > 0.3
    assert rgb[0].min() > rgb[1].min()  # the highlight whitens the colour


def test_ensure_demo_scene_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    renders = []
    real_render = demo.render_views
    monkeypatch.setattr(demo, "render_views", lambda *a: renders.append(1) or real_render(*a))
    first = ensure_demo_scene(tmp_path, TINY)
    assert len(renders) == 3  # one call per split
    assert first.parent == tmp_path and (first / COMPLETE_MARKER).is_file()
    png = first / "train" / "r_0.png"
    stamps = {p: p.stat().st_mtime_ns for p in (png, first / COMPLETE_MARKER)}
    again = ensure_demo_scene(tmp_path, TINY)
    assert again == first and len(renders) == 3, "the cached scene was rendered again"
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    other = ensure_demo_scene(tmp_path, DemoSceneSpec(n_train=3, n_val=1, n_test=2, resolution=16, seed=1))
    assert other != first and (other / COMPLETE_MARKER).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, other.name])
    # An incomplete folder (no marker) is rendered again.
    (first / COMPLETE_MARKER).unlink()
    (first / "train" / "r_0.png").unlink()
    redone = ensure_demo_scene(tmp_path, TINY)
    assert redone == first and (first / COMPLETE_MARKER).is_file() and png.is_file()


def test_interrupted_write_leaves_no_scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    real = demo._write_png
    calls = []

    def failing(path, img):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(path, img)

    monkeypatch.setattr(demo, "_write_png", failing)
    with pytest.raises(KeyboardInterrupt):
        ensure_demo_scene(tmp_path, TINY)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(demo, "_write_png", real)
    assert (ensure_demo_scene(tmp_path, TINY) / COMPLETE_MARKER).is_file()


def test_write_refuses_to_replace_foreign_folder(tmp_path: Path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        write_demo_scene(foreign, TINY)
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]


def _look_at_points(points: np.ndarray, view_dirs: np.ndarray, dist: float = 3.0):
    view_dirs = view_dirs / np.linalg.norm(view_dirs, axis=-1, keepdims=True)
    rgb, alpha, t = trace_rays(points + dist * view_dirs, -view_dirs)
    np.testing.assert_allclose(t, dist, atol=1e-9, err_msg="the probe rays do not reach the intended points")
    return rgb


def test_shading_follows_normals_and_shadows():
    light = demo._LIGHT_DIR
    # Box: the top face (lit, n.l ~ 0.82) is much brighter than the +y face (facing away from the light).
    c, h = demo._BOX_CENTER, demo._BOX_HALF
    points = np.stack([c + [0.03, 0.03, h[2]], c + [0.03, h[1], 0.03]])
    rgb = _look_at_points(points, np.array([[0.2, 0.1, 1.0], [0.0, 1.0, 0.3]]))
    assert rgb[0].sum() > 1.5 * rgb[1].sum()
    # Ground disc: a point in the big sphere's shadow vs. a point of the same checker colour in the light.
    center = demo._SPHERES[0][0]
    top = demo._DISC_CENTER[2] + demo._DISC_HALF_HEIGHT
    shadowed = center - (center[2] - top) / light[2] * light
    lit = shadowed + np.array([0.8, 0.0, 0.0])
    away = np.append(shadowed[:2] - center[:2], 0.3)
    rgb = _look_at_points(np.stack([shadowed, lit]), np.stack([away, away]))
    assert rgb[1].sum() > 2.0 * rgb[0].sum()


def test_blender_loader_rays_agree_with_renderer(tmp_path: Path):
    """The project's Blender loader reads the scene with cameras whose pixel rays hit exactly where alpha is 1."""
    blender = pytest.importorskip("nerfexp.data.blender")
    spec = DemoSceneSpec(n_train=2, n_val=1, n_test=1, resolution=20, supersample=1)
    split = blender.BlenderDataset(write_demo_scene(tmp_path / "s", spec)).load("train")
    assert len(split) == 2 and split.height == split.width == 20
    for k in range(2):
        rays = split.rays(k)
        rgb, alpha, _ = trace_rays(rays.origins.double().numpy(), rays.directions.double().numpy())
        loaded_alpha = split.alphas[k].reshape(-1).numpy()
        assert (alpha != loaded_alpha).sum() <= 1  # float32 cameras in the loader may flip a grazing pixel
        same = alpha == loaded_alpha
        np.testing.assert_allclose((rgb * alpha[:, None])[same], split.images[k].reshape(-1, 3).numpy()[same],
                                   atol=1.0 / 255.0)
