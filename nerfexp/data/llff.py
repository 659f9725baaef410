"""Loader for LLFF captures (``poses_bounds.npy`` + ``images[_<factor>]/``), as NeRF's ``load_llff.py`` reads them.

``poses_bounds.npy`` holds one row of 17 numbers per image (images sorted by file name): a 3x5 matrix, row-major,
whose columns are the camera's [down, right, back] axes, its centre and ``[H, W, focal]`` of the full-size
``images/``, then the near and far depth bounds of the scene seen by that camera. The loader, in the order of the
original code:

1. reorders the axes to [right, up, back] (our OpenGL c2w convention);
2. scales positions and bounds by ``1 / (bd_factor * min bound)`` so the nearest content is at depth
   ``1 / bd_factor`` (beyond the NDC near plane at depth 1);
3. ``recenter``: expresses the poses in the frame of their average pose (centre = mean, axes = mean axes);
4. ``spherify`` (360 captures): moves the origin to the point closest to every optical axis, turns +z towards the
   mean camera position and scales the RMS camera distance to 1.

Forward-facing scenes are trained in NDC (``ndc=True``: rays span t in [0, 1]); otherwise near/far are
``0.9 * min bound`` and ``max bound``. Split (``llffhold``): test = every ``llffhold``-th image (index 0, 8, 16...),
val = ``n_val`` views held out of the others (never a test view), train = the rest; ``llffhold=0`` tests on the
single view closest to the average pose.
"""
from __future__ import annotations

import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nerfexp.cameras import Intrinsics
from nerfexp.config import check_number
from nerfexp.data.images import (DatasetError, check_same_size, list_images, load_frames, require_root,
                                 source_names)
from nerfexp.data.render_paths import circle_path, normalize, poses_avg, spiral_path
from nerfexp.data.scene import BACKGROUNDS, SceneSplit, check_near_far
from nerfexp.data.splits import holdout_splits

POSES_FILE = "poses_bounds.npy"
SPLITS = ("train", "val", "test")


def read_poses_bounds(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read ``poses_bounds.npy``: OpenGL c2w ``(N, 4, 4)`` (file frame), bounds ``(N, 2)`` and ``[H, W, focal]``.

    Raises:
        DatasetError naming the file when it is missing, unreadable or not a finite ``(N, 17)`` array.
    """
    try:
        with open(path, "rb") as f:
            if f.read(6) != b"\x93NUMPY":
                raise DatasetError(f"{path}: not a .npy array (the file does not start with the NumPy header)")
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DatasetError(f"{path}: file is missing") from None
    except DatasetError:
        raise
    except Exception as exc:  # numpy raises ValueError / OSError / EOFError for corrupt files
        raise DatasetError(f"{path}: not a readable .npy array ({exc})") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 2 or arr.shape[1] != 17 or arr.shape[0] == 0:
        raise DatasetError(f"{path}: expected an (N, 17) array (3x5 pose + near/far per image), "
                           f"got shape {getattr(arr, 'shape', None)}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise DatasetError(f"{path}: contains NaN or infinite values")
    poses = arr[:, :15].reshape(-1, 3, 5)
    bounds = arr[:, 15:17].copy()
    if (bounds <= 0).any() or (bounds[:, 1] < bounds[:, 0]).any():
        raise DatasetError(f"{path}: near/far bounds (last two columns) must be positive with near <= far")
    c2w = np.tile(np.eye(4), (poses.shape[0], 1, 1))
    # [down, right, back] -> [right, up, back]
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2] = poses[:, :, 1], -poses[:, :, 0], poses[:, :, 2]
    c2w[:, :3, 3] = poses[:, :, 3]
    return c2w, bounds, poses[0, :, 4].copy()


def spherify_poses(c2w: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """NeRF's ``spherify_poses`` for 360 captures.

    Returns:
        new c2w ``(N, 4, 4)``, new bounds, the similarity ``(4, 4)`` applied (new = T @ old for points), and the
        render circle's radius and height.
    """
    dirs, origins = c2w[:, :3, 2], c2w[:, :3, 3]
    a = np.eye(3) - dirs[:, :, None] * dirs[:, None, :]  # projectors orthogonal to each optical axis
    b = -a @ origins[:, :, None]
    center = np.squeeze(-np.linalg.inv((np.transpose(a, (0, 2, 1)) @ a).mean(0)) @ b.mean(0))
    z = normalize((origins - center).mean(0))
    x = normalize(np.cross([0.1, 0.2, 0.3], z))
    y = normalize(np.cross(z, x))
    frame = np.eye(4)
    frame[:3, 0], frame[:3, 1], frame[:3, 2], frame[:3, 3] = x, y, z, center
    transform = np.linalg.inv(frame)
    reset = transform @ c2w
    scale = 1.0 / np.sqrt(np.mean(np.sum(reset[:, :3, 3] ** 2, -1)))
    reset[:, :3, 3] *= scale
    transform = np.diag([scale, scale, scale, 1.0]) @ transform
    height = float(reset[:, :3, 3].mean(0)[2])
    radius = float(np.sqrt(max(1.0 - height ** 2, 0.0)))
    return reset, bounds * scale, transform, radius, height


def check_projection(ndc: bool, spherify: bool, near: float | None, far: float | None) -> None:
    """``dataset.ndc`` / ``spherify`` / ``near`` / ``far`` that clash stop with one line naming them."""
    if spherify and ndc:
        raise ValueError("dataset.spherify=true is for 360 captures, which NDC cannot represent: "
                         "set dataset.ndc=false")
    if ndc and (near is not None or far is not None):
        raise ValueError(f"dataset.near={near} / dataset.far={far}: with dataset.ndc=true rays span t in [0, 1] "
                         "in NDC and near/far are not used; leave them null, or set dataset.ndc=false")
    check_near_far(near, far)


@dataclass
class PosesInScene:
    """Poses and depth bounds in the scene frame, ``world_to_scene`` (4x4 similarity, points), its ``scale``, and
    the render circle ``(radius, height)`` of a spherified capture (zeros otherwise)."""

    c2w: np.ndarray
    bounds: np.ndarray
    world_to_scene: np.ndarray
    scale: float
    circle: tuple[float, float]


def normalise_poses(c2w: np.ndarray, bounds: np.ndarray, bd_factor: float | None, recenter: bool,
                    spherify: bool) -> PosesInScene:
    """NeRF's LLFF pose normalisation, in its order: scale so the nearest bound is at ``1 / bd_factor`` (null:
    keep), express the poses in the frame of their average pose, and for 360 captures :func:`spherify_poses`."""
    c2w, bounds = c2w.copy(), bounds.copy()
    world_to_scene, scale, circle = np.eye(4), 1.0, (0.0, 0.0)
    if bd_factor is not None:
        scale = 1.0 / (bounds.min() * bd_factor)
        c2w[:, :3, 3] *= scale
        bounds = bounds * scale
        world_to_scene = np.diag([scale, scale, scale, 1.0])
    if recenter:
        to_avg = np.linalg.inv(poses_avg(c2w))
        c2w = to_avg @ c2w
        world_to_scene = to_avg @ world_to_scene
    if spherify:
        c2w, bounds, transform, radius, height = spherify_poses(c2w, bounds)
        world_to_scene = transform @ world_to_scene
        scale *= float(np.cbrt(np.linalg.det(transform[:3, :3])))
        circle = (radius, height)
    return PosesInScene(c2w, bounds, world_to_scene, scale, circle)


def same_picture(width: int, height: int, file_w: float, file_h: float) -> bool:
    """Whether a ``width x height`` image can be a downscaled copy of a ``file_w x file_h`` one: the aspect ratio
    within 1%, or each side within the pixel that rounding or flooring it cost (497x373 / 8 is 62x46 floored, 62x47
    rounded; the first differs from 497/373 by 1.2%)."""
    if abs(width / height - file_w / file_h) <= 0.01 * file_w / file_h:
        return True
    # the width lost up to one pixel too, which moves the height it implies by file_h / file_w
    return abs(height - file_h * width / file_w) < 1.0 + file_h / file_w


def minify(src: Path, dst: Path, factor: int, workers: int = 4) -> None:
    """Write every image of ``src`` shrunk by ``factor`` (Pillow box filter = area average) as PNG into ``dst``.

    Files go to a temporary sibling folder first, renamed to ``dst`` when complete, so an interrupted run leaves
    no half-filled cache.
    """
    paths = list_images(src)
    tmp = dst.parent / f".{dst.name}.tmp-{uuid.uuid4().hex[:12]}"

    def one(path: Path) -> None:
        try:
            with Image.open(path) as img:
                if img.mode not in ("L", "LA", "RGB", "RGBA", "I;16"):
                    img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
                size = (max(1, round(img.width / factor)), max(1, round(img.height / factor)))
                img.resize(size, Image.Resampling.BOX).save(tmp / f"{path.stem}.png")
        except OSError as exc:
            raise DatasetError(f"{path}: cannot shrink into {dst} ({exc})") from None

    try:
        tmp.mkdir(parents=True)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, paths))
        tmp.rename(dst)
    except OSError as exc:
        if not dst.is_dir():  # else another process made the same cache meanwhile
            raise DatasetError(f"{dst}: cannot create the shrunk image cache ({exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class LLFFDataset:
    """LLFF forward-facing (or, with ``spherify``, 360) captures.

    Args:
        root: folder with ``poses_bounds.npy`` and ``images/`` and/or ``images_<factor>/``.
        factor: read ``images_<factor>/`` (made from ``images/`` with a box filter when missing); null or 1 reads
            ``images/``. The focal length is scaled to the loaded image width.
        downscale: extra integer area-averaging factor applied after loading (intrinsics scaled to match).
        background: white | black | random (LLFF images are opaque, so it only matters for RGBA files).
        near, far: override the near/far the loader derives (NDC: 0 and 1; else 0.9 min bound and max bound).
        recenter, bd_factor, spherify: pose normalisation as in NeRF (``bd_factor`` null = no rescaling).
        ndc: map rays to NDC (forward-facing scenes); must be false with ``spherify``.
        llffhold: test = every ``llffhold``-th image; 0 = the view nearest the mean.
        n_val: validation views held out of the non-test views (evenly spaced); train = the rest.

    Attributes:
        c2w: ``(N, 4, 4)`` float64 poses of every image in the scene frame; bounds ``(N, 2)`` in scene units.
        world_to_scene: ``(4, 4)`` similarity from the file's frame to the scene frame (points: ``T @ [x, 1]``;
            directions with camera-space z = -1: ``T[:3, :3] / scene_scale``); scene_scale: its scale.
        depth_bounds: ``(near, far)`` in scene units (0.9 min bound, max bound), also when rays are in NDC.
    """

    def __init__(self, root: str | Path, factor: int | None = 8, downscale: int = 1, background: str = "white",
                 near: float | None = None, far: float | None = None, recenter: bool = True,
                 bd_factor: float | None = 0.75, spherify: bool = False, ndc: bool = True, llffhold: int = 8,
                 n_val: int = 2, bound: float = 1.0):
        self.root = Path(root).expanduser()
        check_number("bound", bound, float, low=0, low_open=True)
        self.bound = float(bound)
        if background not in BACKGROUNDS:
            raise ValueError(f"dataset.background={background!r} is not one of {BACKGROUNDS}")
        if int(downscale) < 1:
            raise ValueError(f"dataset.downscale={downscale!r} must be a positive integer")
        if factor is not None and int(factor) < 1:
            raise ValueError(f"dataset.factor={factor!r} must be a positive integer or null")
        check_projection(ndc, spherify, near, far)
        if bd_factor is not None and bd_factor <= 0:
            raise ValueError(f"dataset.bd_factor={bd_factor!r} must be positive or null")
        if int(llffhold) < 0:
            raise ValueError(f"dataset.llffhold={llffhold!r} must be >= 0")
        self.background = background
        self.factor = int(factor) if factor else 1
        self.downscale = int(downscale)
        self.recenter, self.bd_factor, self.spherify = bool(recenter), bd_factor, bool(spherify)
        self.ndc = bool(ndc)
        self.llffhold = int(llffhold)
        require_root(self.root, "nerf_llff_data/fern")

        c2w, bounds, hwf = read_poses_bounds(self.root / POSES_FILE)
        self.image_paths = self._image_paths(len(c2w))
        width, height = check_same_size(self.image_paths)
        file_h, file_w, file_focal = hwf
        if not same_picture(width, height, file_w, file_h):
            raise DatasetError(f"{self.image_paths[0]}: image is {width}x{height} pixels, but {POSES_FILE} gives "
                               f"{file_w:g}x{file_h:g} (width x height): another aspect ratio")
        focal = float(file_focal * width / file_w)
        self.intrinsics = Intrinsics(focal, focal, width / 2.0, height / 2.0, width, height).scaled(self.downscale)

        frame = normalise_poses(c2w, bounds, bd_factor, self.recenter, self.spherify)
        self.world_to_scene, self.scene_scale, self.circle = frame.world_to_scene, frame.scale, frame.circle
        c2w, bounds = frame.c2w, frame.bounds
        self.c2w, self.bounds = c2w, bounds
        self.depth_bounds = (float(bounds.min() * 0.9), float(bounds.max()))
        default_near, default_far = (0.0, 1.0) if self.ndc else self.depth_bounds
        self.near = default_near if near is None else float(near)
        self.far = default_far if far is None else float(far)

        n = len(c2w)
        if self.llffhold > 0:
            test = np.arange(n)[:: self.llffhold]
        else:
            test = np.array([np.argmin(np.sum((c2w[:, :3, 3] - poses_avg(c2w)[:3, 3]) ** 2, -1))])
        self.split_indices = holdout_splits(n, test, n_val)

    def _image_paths(self, n_poses: int) -> list[Path]:
        """The images of the chosen factor, shrinking ``images/`` into ``images_<factor>/`` when needed."""
        full = self.root / "images"
        folder = full if self.factor == 1 else self.root / f"images_{self.factor}"
        if not folder.is_dir():
            if folder == full or not full.is_dir():
                raise DatasetError(f"{folder}: image folder does not exist"
                                   + ("" if folder == full else f" (and there is no {full} to make it from)"))
            n_full = len(list_images(full))
            if n_full != n_poses:
                raise DatasetError(f"{full}: {n_full} images but {self.root / POSES_FILE} has {n_poses} poses")
            minify(full, folder, self.factor)
        paths = list_images(folder)
        if len(paths) != n_poses:
            raise DatasetError(f"{folder}: {len(paths)} images but {self.root / POSES_FILE} has {n_poses} poses")
        return paths

    def load(self, split: str) -> SceneSplit:
        """Load ``split`` ('train', 'val' or 'test')."""
        if split not in self.split_indices:
            raise ValueError(f"split={split!r} is not one of {SPLITS}")
        idx = self.split_indices[split]
        if len(idx) == 0:
            raise DatasetError(f"{self.root}: split {split!r} is empty with llffhold={self.llffhold} "
                               f"and {len(self.c2w)} images")
        paths = [self.image_paths[i] for i in idx]
        colors, alphas = load_frames(paths, self.downscale)
        c2w = torch.from_numpy(self.c2w[idx].astype(np.float32))
        # forward-facing captures go on behind far: the last sample stands for everything behind it
        return SceneSplit(torch.from_numpy(colors), torch.from_numpy(alphas), c2w, self.intrinsics, self.near,
                          self.far, names=[p.stem for p in paths], ndc=self.ndc, unbounded=True,
                          sources=source_names(paths, self.root))

    def render_path(self, n_frames: int = 120) -> torch.Tensor:
        """``(n_frames, 4, 4)`` c2w for a video: NeRF's spiral, or its circle for spherified captures."""
        if self.spherify:
            poses = circle_path(*self.circle, n_frames)
        else:
            close, inf = self.bounds.min() * 0.9, self.bounds.max() * 5.0
            dt = 0.75
            focus = 1.0 / ((1.0 - dt) / close + dt / inf)
            rads = np.percentile(np.abs(self.c2w[:, :3, 3]), 90, axis=0)
            up = normalize(self.c2w[:, :3, 1].sum(0))
            poses = spiral_path(poses_avg(self.c2w), up, rads, focus, n_frames, zrate=0.5, rots=2)
        return torch.from_numpy(poses.astype(np.float32))
