"""Loader for DTU scans as NeuS / IDR preprocess them: ``cameras_sphere.npz``, ``image/`` (or ``images/``), ``mask/``.

Camera ``i`` has ``world_mat_i`` (the 3x4 or 4x4 projection ``K [R | t]`` in the capture's frame) and
``scale_mat_i`` (maps the unit sphere around the object to that frame). ``P = world_mat @ scale_mat`` projects points
of the *normalised* frame, where the object lies inside the unit sphere; it is decomposed (RQ, in numpy) into
intrinsics and a camera-to-world pose as NeuS's ``load_K_Rt_from_P`` does, then converted from OpenCV's camera
axes (looks down +z, y down) to ours (OpenGL: looks down -z, y up) by flipping the camera's y and z axes.

OpenCV puts the centre of pixel ``(i, j)`` at image point ``(i, j)``; nerfexp puts it at ``(i + 0.5, j + 0.5)``, so
the principal point gains half a pixel. Skew in ``K`` is dropped (DTU's is negligible).

Images: the i-th file (by name) of ``image/`` belongs to camera i, and so does the i-th mask of ``mask/`` (1- or
3-channel; its first channel is used as alpha with ``use_mask_as_alpha``, so colour is premultiplied by the mask and
the background colour of the config fills the rest). Split: test = every ``test_every``-th view (0, 8, 16, ...),
train = the rest less ``n_val`` validation views (never a test view). near/far: one pair for the dataset from the camera distances to the origin
``d``: ``near = max(min d - 1, 0.05)``, ``far = max d + 1`` (every ray through the unit sphere fits in it); each ray
then samples only the part inside the unit sphere (``dataset.bound``).
"""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from nerfexp.cameras import Intrinsics
from nerfexp.config import check_number
from nerfexp.data.images import (DatasetError, check_same_size, list_images, load_frames, require_root,
                                 source_names)
from nerfexp.data.render_paths import azimuths, normalize, orbit_path
from nerfexp.data.scene import BACKGROUNDS, SceneSplit, check_near_far
from nerfexp.data.splits import holdout_splits

SPLITS = ("train", "val", "test")
#: OpenCV camera axes -> OpenGL camera axes (right-multiplied onto a c2w).
CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


def rq3(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RQ decomposition of a ``(3, 3)`` matrix: ``m = k @ r`` with ``k`` upper triangular, positive diagonal and
    ``r`` orthonormal (a rotation when ``det(m) > 0``)."""
    flip = np.eye(3)[::-1]
    q, u = np.linalg.qr((flip @ m).T)
    k = flip @ u.T @ flip
    r = flip @ q.T
    signs = np.diag(np.sign(np.diag(k)))
    return k @ signs, signs @ r


def decompose_projection(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a ``(3, 4)`` projection into intrinsics ``K`` ``(3, 3)`` (``K[2, 2] = 1``) and an OpenCV camera-to-world
    ``(4, 4)`` (the inverse of ``[R | t]``), like NeuS's ``load_K_Rt_from_P`` (cv2.decomposeProjectionMatrix)."""
    p = np.asarray(p, dtype=np.float64)[:3, :4]
    if np.linalg.det(p[:, :3]) < 0:  # a projection is defined up to scale: make its rotation proper
        p = -p
    k, r = rq3(p[:, :3])
    center = -np.linalg.solve(p[:, :3], p[:, 3])
    c2w = np.eye(4)
    c2w[:3, :3], c2w[:3, 3] = r.T, center
    return k / k[2, 2], c2w


def read_cameras(path: Path, n_images: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``world_mat_i @ scale_mat_i`` of every camera in ``path``: ``(N, 3, 4)`` projections and the scale mats.

    Raises:
        DatasetError naming the file and key when it is missing, unreadable, or a matrix is absent or malformed.
    """
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":
                raise DatasetError(f"{path}: not an .npz archive (the file does not start with a zip header)")
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise DatasetError(f"{path}: file is missing") from None
    except DatasetError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: not a readable .npz archive ({exc})") from None
    ids = sorted(int(m.group(1)) for k in data if (m := re.fullmatch(r"world_mat_(\d+)", k)))
    if not ids:
        raise DatasetError(f"{path}: no 'world_mat_<i>' arrays (keys: {sorted(data)[:8]})")
    if ids != list(range(len(ids))):
        missing = sorted(set(range(max(ids) + 1)) - set(ids))
        raise DatasetError(f"{path}: key 'world_mat_{missing[0]}' is missing (cameras must be numbered 0..N-1)")
    projections, scale_mats = [], []
    for i in ids:
        key = f"scale_mat_{i}"
        if key not in data:
            raise DatasetError(f"{path}: key '{key}' is missing")
        world, scale = np.asarray(data[f"world_mat_{i}"], np.float64), np.asarray(data[key], np.float64)
        if world.shape not in ((3, 4), (4, 4)) or not np.isfinite(world).all():
            raise DatasetError(f"{path}: key 'world_mat_{i}' must be a finite 3x4 or 4x4 matrix, got {world.shape}")
        if scale.shape != (4, 4) or not np.isfinite(scale).all():
            raise DatasetError(f"{path}: key '{key}' must be a finite 4x4 matrix, got {scale.shape}")
        p = world[:3] @ scale
        if abs(np.linalg.det(p[:, :3])) < 1e-12 * max(np.abs(p[:, :3]).max(), 1e-30) ** 3:
            raise DatasetError(f"{path}: key 'world_mat_{i}' is not a projection (singular 3x3 part)")
        projections.append(p)
        scale_mats.append(scale)
    return np.stack(projections), np.stack(scale_mats)


class DTUDataset:
    """DTU (NeuS / IDR format) scenes, in the normalised frame where the object fits in the unit sphere.

    Args:
        root: scan folder (``cameras_sphere.npz``, ``image/`` or ``images/``, ``mask/``).
        downscale: integer area-averaging factor (intrinsics scaled to match).
        background: white | black | random: colour behind the masked object.
        near, far: override the near/far derived from the camera distances.
        use_mask_as_alpha: masks become alpha (colour premultiplied by them); false keeps the photos whole.
        test_every: test = views 0, test_every, 2 test_every, ...
        n_val: validation views held out of the non-test views (evenly spaced); train = the rest.
        cameras: camera file name (``cameras_large.npz`` uses a larger bounding sphere).

    Attributes:
        c2w: ``(N, 4, 4)`` float64 OpenGL poses in the normalised frame; intrinsics: for the loaded size.
        bound: the object lies within this distance of the origin (the sphere rays are clipped to).
    """

    def __init__(self, root: str | Path, downscale: int = 1, background: str = "black", near: float | None = None,
                 far: float | None = None, use_mask_as_alpha: bool = True, test_every: int = 8,
                 cameras: str = "cameras_sphere.npz", n_val: int = 3, bound: float = 1.0):
        self.root = Path(root).expanduser()
        check_number("bound", bound, float, low=0, low_open=True)
        self.bound = float(bound)
        if background not in BACKGROUNDS:
            raise ValueError(f"dataset.background={background!r} is not one of {BACKGROUNDS}")
        if int(downscale) < 1:
            raise ValueError(f"dataset.downscale={downscale!r} must be a positive integer")
        check_near_far(near, far)
        if int(test_every) < 2:
            raise ValueError(f"dataset.test_every={test_every!r} must be >= 2 (else nothing is left to train on)")
        self.background = background
        self.downscale = int(downscale)
        self.use_mask_as_alpha = bool(use_mask_as_alpha)
        self.test_every = int(test_every)
        require_root(self.root, "dtu/dtu_scan24")

        camera_file = self.root / cameras
        projections, self.scale_mats = read_cameras(camera_file)
        self.to_world = self.scale_mats[0]  # normalised unit-sphere frame -> world (DTU's) coordinates
        n = len(projections)
        image_dir = next((self.root / d for d in ("image", "images") if (self.root / d).is_dir()), None)
        if image_dir is None:
            raise DatasetError(f"{self.root / 'image'}: image folder does not exist (nor {self.root / 'images'})")
        self.image_paths = list_images(image_dir)
        if len(self.image_paths) != n:
            raise DatasetError(f"{image_dir}: {len(self.image_paths)} images but {camera_file} has {n} cameras")
        width, height = check_same_size(self.image_paths)
        self.mask_paths: list[Path] | None = None
        if self.use_mask_as_alpha:
            mask_dir = self.root / "mask"
            if not mask_dir.is_dir():
                raise DatasetError(f"{mask_dir}: mask folder does not exist "
                                   "(set dataset.use_mask_as_alpha=false to load the photos without masks)")
            self.mask_paths = list_images(mask_dir)
            if len(self.mask_paths) != n:
                raise DatasetError(f"{mask_dir}: {len(self.mask_paths)} masks but {len(self.image_paths)} images "
                                   f"in {image_dir}")
            mask_w, mask_h = check_same_size(self.mask_paths, "mask")
            if (mask_w, mask_h) != (width, height):
                raise DatasetError(f"{self.mask_paths[0]}: mask is {mask_w}x{mask_h} pixels, images in {image_dir} "
                                   f"are {width}x{height}")

        ks, c2ws = zip(*(decompose_projection(p) for p in projections))
        self.c2w = np.stack(c2ws) @ CV_TO_GL
        ks = np.stack(ks)
        # one pinhole for the dataset: DTU's cameras share intrinsics up to calibration noise
        fx, fy = ks[:, 0, 0].mean(), ks[:, 1, 1].mean()
        cx, cy = ks[:, 0, 2].mean() + 0.5, ks[:, 1, 2].mean() + 0.5
        spread = max(np.ptp(ks[:, 0, 0]) / fx, np.ptp(ks[:, 1, 1]) / fy, np.ptp(ks[:, 0, 2]) / fx,
                     np.ptp(ks[:, 1, 2]) / fy)
        if spread > 0.01:
            raise DatasetError(f"{camera_file}: intrinsics differ between cameras by {100 * spread:.1f}% of the "
                               "focal length; per-camera intrinsics are not supported")
        self.intrinsics = Intrinsics(float(fx), float(fy), float(cx), float(cy), width, height).scaled(self.downscale)
        dist = np.linalg.norm(self.c2w[:, :3, 3], axis=-1)
        self.near = max(float(dist.min()) - 1.0, 0.05) if near is None else float(near)
        self.far = float(dist.max()) + 1.0 if far is None else float(far)
        self.split_indices = holdout_splits(n, np.arange(0, n, self.test_every), n_val)

    def load(self, split: str) -> SceneSplit:
        """Load ``split`` ('train', 'val' or 'test')."""
        if split not in self.split_indices:
            raise ValueError(f"split={split!r} is not one of {SPLITS}")
        idx = self.split_indices[split]
        paths = [self.image_paths[i] for i in idx]
        masks = [self.mask_paths[i] for i in idx] if self.mask_paths is not None else None
        colors, alphas = load_frames(paths, self.downscale, mask_paths=masks)
        c2w = torch.from_numpy(self.c2w[idx].astype(np.float32))
        return SceneSplit(torch.from_numpy(colors), torch.from_numpy(alphas), c2w, self.intrinsics, self.near,
                          self.far, names=[p.stem for p in paths], bounding_radius=self.bound,
                          # without masks the photos show the room behind the sphere: rays do not end at it
                          unbounded=not self.use_mask_as_alpha,
                          sources=source_names(paths, self.root))

    def render_path(self, n_frames: int = 120) -> torch.Tensor:
        """``(n_frames, 4, 4)`` c2w on an arc around the origin at the cameras' mean distance and mean height,
        looking at it, sweeping over the cameras' azimuth range and back (a loop that never leaves the observed
        side: DTU captures one side of the object).

        "Up" is the cameras' mean up axis.
        """
        up = normalize(self.c2w[:, :3, 1].sum(0))
        pos = self.c2w[:, :3, 3]
        height = float((pos @ up).mean())
        radius = float(np.sqrt(max(np.linalg.norm(pos, axis=-1).mean() ** 2 - height ** 2, 0.0)))
        mean_dir = pos.mean(0)
        if np.linalg.norm(mean_dir - (mean_dir @ up) * up) < 1e-3 * radius:  # cameras all around: any start
            mean_dir = pos[0]
        az = azimuths(pos, up, mean_dir)  # about the mean camera direction, so the range does not wrap
        mid, half = 0.5 * (az.max() + az.min()), 0.5 * (az.max() - az.min())
        angles = mid + half * np.sin(2.0 * np.pi * np.arange(n_frames) / max(n_frames, 1))
        poses = orbit_path(np.zeros(3), up, radius, height, n_frames, start=mean_dir, angles=angles)
        return torch.from_numpy(poses.astype(np.float32))
