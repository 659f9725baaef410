"""Own captures -> datasets: sharp video frames, COLMAP's poses in OpenGL and LLFF conventions, one-line errors,
nothing half-written; COLMAP itself on fern (skipped without ../shared)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED_DATA, requires_shared
from nerfexp.data.capture import (CaptureError, opengl_c2w, process_capture, sharpness, video_frames, write_poses_bounds,
                                  write_transforms)
from nerfexp.data.demo_capture import box_blur
from nerfexp.data.llff import read_poses_bounds
from nerfexp.studies.pose_error import centre_errors, similarity_align


def noise_image(seed: int, size: int = 96, block: int = 1) -> np.ndarray:
    """Random colours in ``block`` x ``block`` squares (blocks survive a video codec; single pixels do not)."""
    cells = np.random.default_rng(seed).random((size // block, size // block, 3)) * 255
    return np.kron(cells, np.ones((block, block, 1))).astype(np.uint8)


def test_sharpest_frame_of_each_window_is_kept(tmp_path):
    import imageio.v2 as iio2

    sharp = [noise_image(s, block=8) for s in range(3)]
    frames = []
    for k, image in enumerate(sharp):  # windows of two frames: the sharp one first, then second
        pair = [image, box_blur(image)]
        frames += pair if k % 2 == 0 else pair[::-1]
    iio2.mimwrite(tmp_path / "walk.mp4", frames, fps=10, macro_block_size=1, quality=10)
    kept = video_frames(tmp_path / "walk.mp4", tmp_path / "frames", num_frames=3, max_size=None)
    assert len(kept) == 3
    for path, image in zip(kept, sharp):
        got = np.asarray(Image.open(path)).astype(float)
        # closer to the sharp frame than to its blurred twin (the codec blurs a little itself)
        assert np.abs(got - image).mean() < np.abs(got - box_blur(image)).mean()
    assert sharpness(sharp[0]) > 5 * sharpness(box_blur(sharp[0]))


def test_colmap_poses_become_opengl_cameras_and_llff_rows(tmp_path):
    """A camera at (0, 0, 5) looking at the origin, written by COLMAP (x right, y down, looking down +z), is an OpenGL
    c2w looking down -z; transforms.json and poses_bounds.npy give it back."""
    rot_w2c = np.diag([1.0, -1.0, -1.0])  # COLMAP camera looking down world -z, y down
    centre = np.array([0.0, 0.0, 5.0])
    w2c = np.concatenate([rot_w2c, (-rot_w2c @ centre)[:, None]], axis=1)
    c2w = opengl_c2w(w2c)
    np.testing.assert_allclose(c2w[:3, 3], centre, atol=1e-12)
    np.testing.assert_allclose(c2w[:3, :3], np.eye(3), atol=1e-12)  # OpenGL: looks down its -z = world -z
    cams = {"a.png": {"c2w": c2w, "fx": 100.0, "fy": 100.0, "cx": 32.0, "cy": 24.0, "w": 64, "h": 48,
                      "bounds": np.array([2.0, 8.0])}}
    write_transforms(cams, tmp_path / "transforms.json")
    data = json.loads((tmp_path / "transforms.json").read_text())
    assert (data["fl_x"], data["cx"], data["w"], data["h"], data["camera_model"]) == (100.0, 32.0, 64, 48, "PINHOLE")
    np.testing.assert_allclose(data["frames"][0]["transform_matrix"], c2w)
    write_poses_bounds(cams, tmp_path / "poses_bounds.npy")
    back, bounds, hwf = read_poses_bounds(tmp_path / "poses_bounds.npy")
    np.testing.assert_allclose(back[0], c2w, atol=1e-12)
    np.testing.assert_allclose(bounds[0], [2.0, 8.0])
    np.testing.assert_allclose(hwf, [48, 64, 100.0])


def test_similarity_alignment_undoes_scale_rotation_and_shift():
    rng = np.random.default_rng(0)
    known = rng.normal(size=(10, 3))
    angle = 0.7
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    solved = (known - 0.3) @ rot * 2.5  # another frame and scale, as structure from motion gives
    s, r, t = similarity_align(solved, known)
    np.testing.assert_allclose(solved @ r.T * s + t, known, atol=1e-10)
    errors = centre_errors(solved + rng.normal(scale=1e-3, size=solved.shape), known)
    assert 0 < errors["median"] < errors["max"] < 0.01


def test_bad_inputs_stop_with_one_line_and_leave_nothing(tmp_path):
    few = tmp_path / "few"
    few.mkdir()
    for k in range(2):
        Image.fromarray(noise_image(k)).save(few / f"{k}.png")
    with pytest.raises(CaptureError, match="2 images.*at least 3"):
        process_capture(few, tmp_path / "out")
    Image.fromarray(noise_image(2)).save(few / "2.png")
    (few / "3.png").write_bytes(b"not a png")
    with pytest.raises(CaptureError, match="3.png: not a readable image"):
        process_capture(few, tmp_path / "out")
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(CaptureError, match="cannot decode the video"):
        process_capture(tmp_path / "clip.mp4", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "few"]  # no output, no partial folder
    # the command line: one line naming the problem, exit status 2
    run = subprocess.run([sys.executable, "-m", "nerfexp.process", f"input={few}", f"output={tmp_path / 'out'}"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "error: " in run.stderr and "Traceback" not in run.stderr
    assert "3.png: not a readable image" in run.stderr


def test_unrelated_photos_register_nothing_and_write_no_dataset(tmp_path):
    pytest.importorskip("pycolmap", reason="pycolmap is not installed")
    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(4):  # independent noise: no two views of one scene
        Image.fromarray(noise_image(k, 128)).save(photos / f"{k}.png")
    with pytest.raises(CaptureError, match="registered [0-3] of 4 images; try photos with more overlap"):
        process_capture(photos, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


@requires_shared("nerf_llff_data/fern")
def test_colmap_recovers_ferns_published_cameras(tmp_path):
    pytest.importorskip("pycolmap", reason="pycolmap is not installed")
    fern = SHARED_DATA / "nerf_llff_data" / "fern"
    result = process_capture(fern / "images_8", tmp_path / "fern", max_size=None)
    assert result.registered == result.total == 20, result.line()
    out = tmp_path / "fern"
    assert {"images", "images_2", "images_4", "images_8", "sparse", "transforms.json", "poses_bounds.npy"} <= {
        p.name for p in out.iterdir()}
    assert (out / "sparse" / "0" / "cameras.bin").is_file()
    solved, bounds, _ = read_poses_bounds(out / "poses_bounds.npy")
    known, _, _ = read_poses_bounds(fern / "poses_bounds.npy")
    errors = centre_errors(solved[:, :3, 3], known[:, :3, 3])
    assert errors["median"] < 0.01 and errors["max"] < 0.02, errors
    # viewing directions agree after the alignment: the OpenGL conversion keeps -z forward
    _, rot, _ = similarity_align(solved[:, :3, 3], known[:, :3, 3])
    forward_s, forward_k = -solved[:, :3, 2] @ rot.T, -known[:, :3, 2]
    assert np.degrees(np.arccos(np.clip((forward_s * forward_k).sum(-1), -1, 1))).max() < 2.0
    assert (bounds[:, 0] > 0).all() and (bounds[:, 1] > bounds[:, 0]).all()
    # the output reads as an LLFF capture: images_8 of the undistorted images, every view in one split
    from hydra.utils import instantiate

    from conftest import compose_train

    dataset = instantiate(compose_train(["dataset=llff", f"dataset.root={out}"]).dataset)
    splits = [dataset.load(name) for name in ("train", "val", "test")]
    size = json.loads((out / "transforms.json").read_text())
    assert (splits[0].width, splits[0].height) == (size["w"] // 8, size["h"] // 8)
    assert size["w"] <= 504 and size["h"] <= 378  # undistortion crops to pixels every view saw
    assert sum(len(split) for split in splits) == 20
    assert not list(tmp_path.glob(".fern.partial-*"))
    # dataset=nerfstudio (transforms.json) and dataset=colmap (sparse/0) read the same cameras
    from nerfexp.data.nerfstudio import ColmapDataset, NerfstudioDataset

    via_json, via_model = NerfstudioDataset(out), ColmapDataset(out)
    np.testing.assert_allclose(via_json.frames.c2w, via_model.frames.c2w, atol=1e-6)
    assert [p.name for p in via_json.frames.paths] == [p.name for p in via_model.frames.paths]
    assert len(via_model.load("test")) == 3 and via_model.near < via_model.far
    # in NDC, as dataset=llff trains on it: the same scene-frame cameras
    from nerfexp.data.llff import LLFFDataset

    ndc = ColmapDataset(out, ndc=True)
    np.testing.assert_allclose(ndc.frames.c2w, LLFFDataset(out, factor=None).c2w, atol=1e-5)
    assert ndc.load("val").ndc and (ndc.near, ndc.far) == (0.0, 1.0)


@requires_shared("nerf_llff_data/fern")
def test_a_walkthrough_video_becomes_a_dataset(tmp_path):
    """fern's photos as a video, each followed by a blurred copy: the sharp frames are kept, sequential matching
    registers them, and the dataset's cameras agree with the published ones."""
    pytest.importorskip("pycolmap", reason="pycolmap is not installed")
    import imageio.v2 as iio2

    fern = SHARED_DATA / "nerf_llff_data" / "fern"
    frames = []
    for path in sorted((fern / "images_8").glob("*.png")):
        image = np.asarray(Image.open(path).convert("RGB"))[:376]  # even height for H.264
        frames += [image, box_blur(image, 3)]
    iio2.mimwrite(tmp_path / "fern.mp4", frames, fps=10, macro_block_size=1, quality=9)
    result = process_capture(tmp_path / "fern.mp4", tmp_path / "out", num_frames=20, max_size=None)
    assert result.total == 20 and result.registered >= 18, result.line()
    solved, _, _ = read_poses_bounds(tmp_path / "out" / "poses_bounds.npy")
    names = sorted(p.name for p in (tmp_path / "out" / "images").iterdir())
    known, _, _ = read_poses_bounds(fern / "poses_bounds.npy")
    known = known[[int(n.split("_")[1].split(".")[0]) for n in names]]  # frame k of window k is photo k
    errors = centre_errors(solved[:, :3, 3], known[:, :3, 3])
    assert errors["median"] < 0.02, errors


def rendered_capture(n: int, size=(240, 180), arc_deg: float = 100.0):
    """``n`` photos of the demo objects in the textured room from known cameras on a rising orbit: OpenGL c2w
    ``(n, 4, 4)`` and uint8 images."""
    from nerfexp.data.demo_capture import orbit_cameras, render_capture

    c2w = orbit_cameras(n, radius=3.0, elevation_deg=25.0, arc_deg=arc_deg)
    c2w[:, 2, 3] += np.linspace(-0.3, 0.3, n)  # not all in one plane: a better conditioned similarity
    focal = 0.5 * size[0] / np.tan(0.5 * 0.9)
    return c2w, render_capture(c2w, size[0], size[1], focal)


def test_colmap_recovers_the_known_cameras_of_a_rendered_capture(tmp_path):
    """No ../shared needed: photos rendered from known cameras -> process -> the same camera centres."""
    pytest.importorskip("pycolmap", reason="pycolmap is not installed")
    c2w, images = rendered_capture(14)
    photos = tmp_path / "photos"
    photos.mkdir()
    for k, image in enumerate(images):
        Image.fromarray(image).save(photos / f"view_{k:03d}.png")
    result = process_capture(photos, tmp_path / "out", max_size=None)
    assert result.registered == result.total == 14, result.line()
    solved, _, _ = read_poses_bounds(tmp_path / "out" / "poses_bounds.npy")
    errors = centre_errors(solved[:, :3, 3], c2w[:, :3, 3])
    assert errors["median"] < 0.01 and errors["max"] < 0.03, errors


def test_a_video_of_a_rendered_capture_registers(tmp_path):
    """The same scene as a video along the orbit, each view followed by a blurred copy: the sharp frames are kept,
    sequential matching registers them, at the known cameras."""
    pytest.importorskip("pycolmap", reason="pycolmap is not installed")
    import imageio.v2 as iio2

    c2w, images = rendered_capture(14)
    frames = [f for image in images for f in (image, box_blur(image, 3))]
    iio2.mimwrite(tmp_path / "orbit.mp4", frames, fps=10, macro_block_size=1, quality=9)
    result = process_capture(tmp_path / "orbit.mp4", tmp_path / "out", num_frames=14, max_size=None)
    assert result.total == 14 and result.registered >= 12, result.line()
    names = sorted(p.name for p in (tmp_path / "out" / "images").iterdir())
    solved, _, _ = read_poses_bounds(tmp_path / "out" / "poses_bounds.npy")
    known = c2w[[int(n.split("_")[1].split(".")[0]) for n in names]]  # frame k of window k is view k
    errors = centre_errors(solved[:, :3, 3], known[:, :3, 3])
    assert errors["median"] < 0.02, errors
