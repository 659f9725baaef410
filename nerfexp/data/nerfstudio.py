"""Loaders for own captures: ``transforms.json`` (nerfstudio and instant-ngp, ``dataset=nerfstudio``) and a COLMAP
model with its images (``sparse/0`` + ``images/``, ``dataset=colmap``), both as ``python -m nerfexp.process`` writes
them.

Both give one list of posed pinhole frames; the scene is then normalised so the cameras and what they see (each
camera's near/far depth range along its axis, from COLMAP's sparse points) fit the box ``[-bound, bound]^3``: centred
on that content and scaled uniformly, with ``to_world`` (4x4) mapping back to the capture's frame (meshes, poses).
Rays are sampled inside the box and, as photos have a background, the last sample takes the rest of the ray.
Splits as for LLFF: test = every ``test_every``-th frame, ``n_val`` validation frames held out of the others.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nerfexp.cameras import Intrinsics, focal_from_fov
from nerfexp.config import check_number
from nerfexp.data.blender import read_frames_json
from nerfexp.data.images import DatasetError, check_same_size, load_frames, require_root, source_names
from nerfexp.data.llff import check_projection, normalise_poses
from nerfexp.data.render_paths import normalize, poses_avg, spiral_path
from nerfexp.data.scene import BACKGROUNDS, SceneSplit
from nerfexp.data.splits import holdout_splits

SPLITS = ("train", "val", "test")
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")


@dataclass
class Frames:
    """A capture's frames: image ``paths``, OpenGL ``c2w (N, 4, 4)``, the pinhole ``intrinsics`` (the first frame's
    where they differ, then ``view_intrinsics (N, 4)`` fx, fy, cx, cy per frame, all frames one image size),
    per-frame depth ``bounds (N, 2)`` (None where unknown), in the capture's own frame and units, and instant-ngp's
    ``aabb_scale`` (the scene box in units of the cameras' extent) where given."""

    paths: list[Path]
    c2w: np.ndarray
    intrinsics: Intrinsics
    bounds: np.ndarray | None
    view_intrinsics: np.ndarray | None = None
    aabb_scale: float | None = None


def shared_or_per_view(values: list[tuple[float, float, float, float]], width: int, height: int) \
        -> tuple[Intrinsics, np.ndarray | None]:
    """One pinhole for every frame, or the first frame's and all of them ``(N, 4)`` where they differ."""
    first = Intrinsics(*values[0], width, height)
    return first, (np.array(values, dtype=np.float64) if len(set(values)) > 1 else None)


def read_transforms_json(root: Path) -> Frames:
    """``root/transforms.json``: shared or per-frame intrinsics (``fl_x``/``camera_angle_x``, ``cx``, ``cy``,
    ``w``, ``h``), ``file_path`` relative to ``root``, ``transform_matrix`` (OpenGL), optional ``colmap_near_far``."""
    path = root / "transforms.json"
    meta, frames = read_frames_json(path, " (write one with python -m nerfexp.process)")
    distorted = [k for k in DISTORTION_KEYS if any(float(f.get(k, meta.get(k, 0.0)) or 0.0) for f in frames)]
    if distorted:
        raise DatasetError(f"{path}: lens distortion ({', '.join(distorted)}) is not modelled by the ray generator; "
                           "undistort the images first (python -m nerfexp.process writes pinhole images)")
    paths, intrinsics = [], []
    for k, frame in enumerate(frames):
        if not isinstance(frame, dict) or "file_path" not in frame or "transform_matrix" not in frame:
            raise DatasetError(f"{path}: frames[{k}] needs 'file_path' and 'transform_matrix'")
        p = (root / frame["file_path"]).resolve()
        paths.append(p if p.suffix else p.with_suffix(".png"))
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(f"{missing[0]}: image file listed in {path} is missing"
                           + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    width, height = check_same_size(paths)
    for frame in frames:
        get = {**meta, **frame}.get
        fx = get("fl_x") or (focal_from_fov(width, get("camera_angle_x")) if get("camera_angle_x") else None)
        if fx is None:
            raise DatasetError(f"{path}: neither 'fl_x' nor 'camera_angle_x' is given")
        intrinsics.append((float(fx), float(get("fl_y") or fx), float(get("cx", width / 2)),
                           float(get("cy", height / 2))))
    try:
        c2w = np.array([f["transform_matrix"] for f in frames], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: 'transform_matrix' entries are not numbers ({exc})") from None
    if c2w.shape[1:] not in ((4, 4), (3, 4)):
        raise DatasetError(f"{path}: 'transform_matrix' must be 4x4, got {c2w.shape[1:]}")
    if c2w.shape[1] == 3:
        c2w = np.concatenate([c2w, np.tile([[[0.0, 0.0, 0.0, 1.0]]], (len(c2w), 1, 1))], axis=1)
    bounds = (np.array([f["colmap_near_far"] for f in frames], dtype=np.float64)
              if all("colmap_near_far" in f for f in frames) else None)
    aabb_scale = meta.get("aabb_scale")
    if aabb_scale is not None:
        check_number(f"{path}: aabb_scale", aabb_scale, float, low=0, low_open=True)
    order = np.argsort([p.name for p in paths], kind="stable")  # splits by file name, as LLFF's
    shared, per_view = shared_or_per_view([intrinsics[k] for k in order], width, height)
    return Frames([paths[k] for k in order], c2w[order], shared, None if bounds is None else bounds[order],
                  per_view, None if aabb_scale is None else float(aabb_scale))


def read_colmap_model(root: Path) -> Frames:
    """``root/sparse/0`` (or ``root/sparse``) with ``root/images``: a pinhole COLMAP model (undistorted)."""
    from nerfexp.data.capture import import_pycolmap, model_cameras

    pycolmap = import_pycolmap()
    model_dir = next((d for d in (root / "sparse" / "0", root / "sparse") if (d / "cameras.bin").is_file()
                      or (d / "cameras.txt").is_file()), None)
    if model_dir is None:
        raise DatasetError(f"{root / 'sparse' / '0'}: no COLMAP model (cameras/images/points3D .bin or .txt)")
    cameras = model_cameras(pycolmap.Reconstruction(model_dir))
    if not cameras:
        raise DatasetError(f"{model_dir}: the model has no registered image")
    paths = [root / "images" / name for name in cameras]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(f"{missing[0]}: image of the COLMAP model in {model_dir} is missing")
    first = next(iter(cameras.values()))
    if any((c["w"], c["h"]) != (first["w"], first["h"]) for c in cameras.values()):
        raise DatasetError(f"{model_dir}: cameras of different image sizes; this loader takes one size "
                           "(process with single_camera=true, or resize the photos alike)")
    shared, per_view = shared_or_per_view([(c["fx"], c["fy"], c["cx"], c["cy"]) for c in cameras.values()],
                                          first["w"], first["h"])
    return Frames(paths, np.stack([c["c2w"] for c in cameras.values()]), shared,
                  np.stack([c["bounds"] for c in cameras.values()]), per_view)


def normalising_transform(c2w: np.ndarray, bounds: np.ndarray | None, bound: float, margin: float = 0.9,
                          aabb_scale: float | None = None) -> np.ndarray:
    """4x4 similarity (uniform scale + shift) taking the cameras and the content they see (the points at each
    camera's near and far depth on its axis) into ``[-margin * bound, margin * bound]^3``, centred on the content.
    Without depths the box is ``aabb_scale`` (instant-ngp's key; default 2) times the cameras' extent around them."""
    centres = c2w[:, :3, 3]
    forward = -c2w[:, :3, 2]
    if bounds is not None:
        content = np.concatenate([centres + forward * bounds[:, :1], centres + forward * bounds[:, 1:]])
        centre = content.mean(0)
        extent = np.abs(np.concatenate([centres, content]) - centre).max()
    else:
        centre = centres.mean(0)
        extent = np.abs(centres - centre).max() * (aabb_scale or 2.0)
    scale = margin * bound / max(float(extent), 1e-9)
    transform = np.eye(4)
    transform[:3, :3] *= scale
    transform[:3, 3] = -scale * centre
    return transform


class NerfstudioDataset:
    """A ``transforms.json`` capture (``dataset=nerfstudio``); :class:`ColmapDataset` reads a COLMAP model instead.

    Args:
        root: the capture folder.
        downscale: integer area-averaging factor.
        near, far: ray range in normalised units; null = from the frames' depth bounds (``colmap_near_far``), else
            0 to the box's diagonal.
        test_every: test = every ``test_every``-th frame by file name (0, 8, 16...); ``n_val`` validation frames
            are held out of the others.
        bound: the box the scene is normalised into.
        ndc: forward-facing captures in NDC (rays t in [0, 1]), and ``spherify`` for 360 captures: the poses are
            then normalised as LLFF's (``bd_factor``, recentring, :func:`nerfexp.data.llff.normalise_poses`)
            instead of into the box; both need each frame's depth bounds (``colmap_near_far``).
        per_view_bounds: with each frame's depth bounds (and ``near``/``far`` not given), in the box (not with
            ``ndc``/``spherify``), each view's rays span its own range (0.9 x its near depth to 1.1 x its far
            depth) instead of one range for all.

    Frames may have their own intrinsics (instant-ngp's per-frame ``fl_x``..., COLMAP models with several cameras)
    when they share one image size; NDC needs one camera.
    """

    example = "my_capture (python -m nerfexp.process output=...)"

    def __init__(self, root: str | Path, downscale: int = 1, background: str = "white", near: float | None = None,
                 far: float | None = None, test_every: int = 8, n_val: int = 2, bound: float = 1.0,
                 ndc: bool = False, spherify: bool = False, bd_factor: float | None = 0.75,
                 per_view_bounds: bool = True):
        self.root = Path(root).expanduser()
        check_number("downscale", downscale, int, low=1)
        check_number("test_every", test_every, int, low=2)
        check_number("bound", bound, float, low=0, low_open=True)
        check_number("bd_factor", bd_factor, float, low=0, low_open=True, nullable=True)
        if background not in BACKGROUNDS:
            raise ValueError(f"dataset.background={background!r} is not one of {BACKGROUNDS}")
        self.downscale, self.background, self.bound = int(downscale), background, float(bound)
        self.test_every, self.n_val = int(test_every), n_val
        check_projection(ndc, spherify, near, far)
        self.ndc, self.spherify = bool(ndc), bool(spherify)
        require_root(self.root, self.example)
        frames = self.read_frames()
        if ndc and frames.view_intrinsics is not None:
            raise DatasetError(f"{self.root}: the frames have different intrinsics; dataset.ndc=true maps rays with "
                               "one camera's focal length (set dataset.ndc=false)")
        if (ndc or spherify) and frames.bounds is None:
            raise DatasetError(f"{self.root}: dataset.ndc / dataset.spherify need each frame's depth bounds "
                               "('colmap_near_far', written by python -m nerfexp.process); set both false")
        if ndc or spherify:
            posed = normalise_poses(frames.c2w, frames.bounds, bd_factor, True, self.spherify)
            self.to_world = np.linalg.inv(posed.world_to_scene)
            c2w, scaled_bounds = posed.c2w, posed.bounds
        else:
            to_scene = normalising_transform(frames.c2w, frames.bounds, self.bound, aabb_scale=frames.aabb_scale)
            self.to_world = np.linalg.inv(to_scene)
            scale = float(to_scene[0, 0])
            c2w = to_scene @ frames.c2w
            c2w[:, :3, :3] /= scale  # keep the rotations orthonormal
            scaled_bounds = None if frames.bounds is None else frames.bounds * scale
        self.frames = Frames(frames.paths, c2w, frames.intrinsics, scaled_bounds, frames.view_intrinsics,
                             frames.aabb_scale)
        # per-view ranges in the box; ndc and spherify keep LLFF's one range, so they train as dataset=llff does
        self.per_view_bounds = bool(per_view_bounds) and scaled_bounds is not None and not (ndc or spherify) \
            and near is None and far is None
        if near is None or far is None:
            if self.ndc:
                auto_near, auto_far = 0.0, 1.0
            elif self.frames.bounds is not None:
                auto_near = 0.9 * float(self.frames.bounds[:, 0].min())
                # in the box, as far as each view's own range reaches (per_view_bounds); spherify: LLFF's
                auto_far = float(self.frames.bounds[:, 1].max()) * (1.0 if spherify else 1.1)
            else:
                auto_near, auto_far = 0.0, 2.0 * 3 ** 0.5 * self.bound
        self.near = float(near) if near is not None else auto_near
        self.far = float(far) if far is not None else max(auto_far, self.near + 1e-3)
        test = np.arange(0, len(frames.paths), self.test_every)
        self.splits = holdout_splits(len(frames.paths), test, n_val)

    def read_frames(self) -> Frames:
        return read_transforms_json(self.root)

    def load(self, split: str) -> SceneSplit:
        if split not in SPLITS:
            raise ValueError(f"split={split!r} must be one of {SPLITS}")
        idx = self.splits[split]
        paths = [self.frames.paths[k] for k in idx]
        colors, alphas = load_frames(paths, self.downscale)
        view_near_far = view_k = None
        if self.per_view_bounds:
            b = self.frames.bounds[idx]
            view_near_far = torch.from_numpy(np.stack([0.9 * b[:, 0], 1.1 * b[:, 1]], 1).astype(np.float32))
        if self.frames.view_intrinsics is not None:
            view_k = torch.from_numpy((self.frames.view_intrinsics[idx] / self.downscale).astype(np.float32))
        return SceneSplit(torch.from_numpy(colors), torch.from_numpy(alphas),
                          torch.from_numpy(self.frames.c2w[idx].astype(np.float32)),
                          self.frames.intrinsics.scaled(self.downscale), self.near, self.far,
                          names=[p.name for p in paths], ndc=self.ndc,
                          bounding_box=None if (self.ndc or self.spherify) else self.bound, unbounded=True,
                          sources=source_names(paths, self.root), view_near_far=view_near_far,
                          view_intrinsics=view_k)

    def render_path(self, n_frames: int = 120) -> torch.Tensor:
        """``(n_frames, 4, 4)`` c2w: a spiral within the cameras' span (captures see one side only, not an orbit)."""
        c2w = self.frames.c2w
        avg = poses_avg(c2w)
        up = normalize(c2w[:, :3, 1].sum(0))
        focus = float(self.frames.bounds.mean()) if self.frames.bounds is not None else self.bound
        radii = np.percentile(np.abs((c2w[:, :3, 3] - avg[:3, 3]) @ avg[:3, :3]), 90, axis=0)
        poses = spiral_path(avg, up, radii, focus, n_frames)
        return torch.from_numpy(np.asarray(poses, dtype=np.float32))


class ColmapDataset(NerfstudioDataset):
    """A COLMAP model (``sparse/0``) and its ``images/`` (``dataset=colmap``), normalised as
    :class:`NerfstudioDataset`."""

    def read_frames(self) -> Frames:
        return read_colmap_model(self.root)
