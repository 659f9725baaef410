"""Loader for the Blender / NeRF-synthetic format: ``transforms_{split}.json`` + RGBA PNG frames."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from nerfexp.cameras import Intrinsics, focal_from_fov
from nerfexp.config import check_number
from nerfexp.data.images import DatasetError, check_same_size, load_frames, require_root, source_names
from nerfexp.data.scene import BACKGROUNDS, SceneSplit, check_near_far

__all__ = ["BlenderDataset", "DatasetError", "load_frames"]


def read_frames_json(path: Path, missing_hint: str = "") -> tuple[dict, list]:
    """The JSON object of a transforms file and its non-empty ``frames`` list; a missing, malformed or frameless
    file raises :class:`DatasetError` naming it (``missing_hint``: what to do when it is missing)."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: file is missing{missing_hint}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: malformed JSON ({exc})") from None
    frames = meta.get("frames") if isinstance(meta, dict) else None
    if not frames or not isinstance(frames, list):
        raise DatasetError(f"{path}: no 'frames' listed")
    return meta, frames


class BlenderDataset:
    """NeRF-synthetic scenes. ``downscale`` is an integer area-averaging factor (``half_res`` = 2).

    ``bound``: half side of the box around the origin that holds the object (1.5 for NeRF-synthetic; hash grids,
    occupancy grids and meshes cover it); with ``clip_rays`` rays sample only where they cross it, instead of all
    of [near, far]."""

    def __init__(self, root: str | Path, downscale: int = 1, background: str = "white", near: float = 2.0,
                 far: float = 6.0, testskip: int = 1, half_res: bool = False, n_views: int | None = None,
                 bound: float = 1.5, clip_rays: bool = False):
        self.root = Path(root).expanduser()
        check_near_far(near, far)
        check_number("testskip", testskip, int, low=1)
        check_number("bound", bound, float, low=0, low_open=True)
        self.bound, self.clip_rays = float(bound), bool(clip_rays)
        if n_views is not None and int(n_views) < 1:
            raise ValueError(f"dataset.n_views={n_views!r} must be a positive integer or null")
        self.n_views = None if n_views is None else int(n_views)
        self.downscale = int(downscale) * (2 if half_res else 1)
        if background not in BACKGROUNDS:
            raise ValueError(f"dataset.background={background!r} is not one of {BACKGROUNDS}")
        if self.downscale < 1:
            raise ValueError(f"dataset.downscale={downscale!r} must be a positive integer")
        self.background = background
        self.near, self.far = float(near), float(far)
        self.testskip = int(testskip)
        require_root(self.root, "nerf_synthetic/lego")

    def transforms_path(self, split: str) -> Path:
        return self.root / f"transforms_{split}.json"

    def read_transforms(self, split: str) -> tuple[Path, dict, list[dict]]:
        """The checked ``transforms_<split>.json``: its path, the whole JSON and its frames."""
        path = self.transforms_path(split)
        meta, frames = read_frames_json(path)
        for key in ("file_path", "transform_matrix"):
            bad = next((k for k, f in enumerate(frames) if not isinstance(f, dict) or key not in f), None)
            if bad is not None:
                raise DatasetError(f"{path}: frames[{bad}] has no '{key}'")
        if "fl_x" not in meta and "camera_angle_x" not in meta:
            raise DatasetError(f"{path}: neither 'camera_angle_x' nor 'fl_x' is given")
        return path, meta, frames

    def load(self, split: str) -> SceneSplit:
        """Load ``split`` ('train', 'val' or 'test')."""
        path, meta, frames = self.read_transforms(split)
        skip = self.testskip if split != "train" else 1
        frames = frames[::max(skip, 1)]
        if split == "train" and self.n_views is not None and self.n_views < len(frames):
            # evenly spaced over the capture, so fewer views still surround the object
            keep = np.round(np.linspace(0, len(frames) - 1, self.n_views)).astype(int)
            frames = [frames[k] for k in keep]
        paths = []
        for frame in frames:
            p = (self.root / frame["file_path"]).resolve()
            paths.append(p if p.suffix else p.with_suffix(".png"))
        missing = [p for p in paths if not p.is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DatasetError(f"{missing[0]}: image file listed in {path} is missing{more}")
        try:
            c2w_np = np.array([f["transform_matrix"] for f in frames], dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"{path}: 'transform_matrix' entries are not numbers ({exc})") from None
        if c2w_np.shape[1:] != (4, 4):
            raise DatasetError(f"{path}: 'transform_matrix' must be 4x4, got {c2w_np.shape[1:]}")
        full_w, full_h = check_same_size(paths)  # header reads: a wrong-sized frame fails before decoding
        colors, alphas = load_frames(paths, self.downscale)
        fx = meta.get("fl_x") or focal_from_fov(full_w, meta["camera_angle_x"])
        fy = meta.get("fl_y") or fx
        cx = meta.get("cx", full_w / 2.0)
        cy = meta.get("cy", full_h / 2.0)
        intr = Intrinsics(fx, fy, cx, cy, full_w, full_h).scaled(self.downscale)
        return SceneSplit(torch.from_numpy(colors), torch.from_numpy(alphas), torch.from_numpy(c2w_np), intr,
                          self.near, self.far, names=[Path(f["file_path"]).name for f in frames],
                          bounding_box=self.bound if self.clip_rays else None, sources=source_names(paths, self.root))

    def render_path(self, n_frames: int = 120) -> torch.Tensor:
        """``(n_frames, 4, 4)`` c2w orbiting the origin at the test cameras' mean distance and height (+z up)."""
        from nerfexp.data.render_paths import orbit_path

        _, _, frames = self.read_transforms("test")
        pos = np.array([f["transform_matrix"] for f in frames], dtype=np.float64)[:, :3, 3]
        height = float(pos[:, 2].mean())
        radius = float(np.linalg.norm(pos[:, :2], axis=-1).mean())
        poses = orbit_path(np.zeros(3), np.array([0.0, 0.0, 1.0]), radius, height, n_frames, start=pos[0])
        return torch.from_numpy(poses.astype(np.float32))
