"""Own captures -> a dataset: photos or a video, camera poses solved by COLMAP (through ``pycolmap``), written in
the formats the platform reads.

Stages: frames (a video's sharpest frame per window, or a folder's images) downscaled to ``max_size``; COLMAP
feature extraction (one shared camera by default), matching (exhaustive or sequential), incremental mapping, the
model with the most registered images kept; undistortion, so every written image follows a pinhole model. The output
folder holds ``images/`` (+ ``images_2``, ``images_4``, ``images_8``), ``sparse/0/`` (the undistorted COLMAP model),
``transforms.json`` (nerfstudio / instant-ngp: ``fl_x, fl_y, cx, cy, w, h, camera_model`` and OpenGL
``transform_matrix`` per frame) and ``poses_bounds.npy`` (LLFF: ``dataset=llff dataset.root=<output>`` trains on
it). Everything is written into a temporary folder beside ``output`` and renamed at the end, so an interrupted run
leaves nothing a later run could take for a dataset.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from nerfexp.data.images import IMAGE_SUFFIXES, DatasetError, list_images
from nerfexp.data.writers import llff_rows

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
MATCHERS = ("exhaustive", "sequential")
FACTORS = (2, 4, 8)


class CaptureError(DatasetError):
    """A capture that cannot become a dataset; the message says what happened and what to try."""


@dataclass
class ProcessResult:
    """What a processing run made: ``registered`` of ``total`` images, COLMAP's mean reprojection error [px],
    sparse points, seconds per stage, and the output folder."""

    output: str
    registered: int
    total: int
    mean_reprojection_error: float
    n_points: int
    seconds: dict

    def line(self) -> str:
        return (f"registered {self.registered} of {self.total} images, mean reprojection error "
                f"{self.mean_reprojection_error:.2f} px, {self.n_points} points -> {self.output}")


# -- frames -----------------------------------------------------------------------------------------------------------
def sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image ``(H, W[, C])``: high for sharp frames, low for blurred ones."""
    grey = image.astype(np.float64)
    if grey.ndim == 3:
        grey = grey[..., :3].mean(-1)
    lap = (grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4.0 * grey[1:-1, 1:-1])
    return float(lap.var())


def resize_long_side(image: Image.Image, max_size: int | None) -> Image.Image:
    """``image`` scaled down (never up) so its long side is at most ``max_size`` (None keeps it)."""
    if not max_size or max(image.size) <= max_size:
        return image
    scale = max_size / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def video_frames(video: Path, out_dir: Path, num_frames: int, max_size: int | None) -> list[Path]:
    """Split ``video`` into ``num_frames`` equal windows and write the sharpest frame of each (PNG) to ``out_dir``."""
    import imageio.v2 as iio2

    try:
        reader = iio2.get_reader(video, format="FFMPEG")
        frames = [np.asarray(f) for f in tqdm(reader, desc="decode video", unit="frame", leave=False)]
        reader.close()
    except Exception as exc:
        raise CaptureError(f"input={video}: cannot decode the video ({type(exc).__name__}: {exc}); convert it to "
                           "MP4 (H.264) or give a folder of images") from None
    if not frames:
        raise CaptureError(f"input={video}: the video has no frames")
    num_frames = min(num_frames, len(frames))
    if num_frames < 3:
        raise CaptureError(f"input={video}: {len(frames)} frames; at least 3 views are needed for structure from "
                           "motion (use a longer video or more frames: num_frames)")
    edges = np.linspace(0, len(frames), num_frames + 1).round().astype(int)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for k, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        best = max(range(a, max(b, a + 1)), key=lambda i: sharpness(frames[i]))
        path = out_dir / f"frame_{k:05d}.png"
        resize_long_side(Image.fromarray(frames[best]).convert("RGB"), max_size).save(path)
        written.append(path)
    return written


def folder_images(folder: Path, out_dir: Path, max_size: int | None) -> list[Path]:
    """Copy ``folder``'s images to ``out_dir`` as RGB PNGs, downscaled to ``max_size``; unreadable files stop the
    run with their name."""
    paths = list_images(folder)
    if len(paths) < 3:
        raise CaptureError(f"input={folder}: {len(paths)} images ({', '.join(IMAGE_SUFFIXES)}); at least 3 views "
                           "are needed for structure from motion")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in tqdm(paths, desc="images", unit="image", leave=False):
        try:
            with Image.open(path) as image:
                small = resize_long_side(image.convert("RGB"), max_size)
        except Exception as exc:
            raise CaptureError(f"{path}: not a readable image ({type(exc).__name__}: {exc}); remove it or "
                               "replace it") from None
        target = out_dir / f"{path.stem}.png"
        small.save(target)
        written.append(target)
    return written


# -- COLMAP -----------------------------------------------------------------------------------------------------------
def import_pycolmap():
    try:
        import pycolmap
    except ImportError:
        raise CaptureError("python -m nerfexp.process needs COLMAP's Python bindings: pip install pycolmap "
                           "(or pip install -e \".[capture]\")") from None
    return pycolmap


def solve_poses(image_dir: Path, work_dir: Path, camera_model: str, matcher: str, single_camera: bool = True,
                seed: int = 0):
    """COLMAP on ``image_dir``: SIFT features, ``matcher`` matching, incremental mapping; the reconstruction with
    the most registered images (None when nothing was registered)."""
    pycolmap = import_pycolmap()
    pycolmap.logging.minloglevel = 2  # COLMAP's own INFO lines would bury the progress bars; errors still show
    pycolmap.set_random_seed(seed)  # RANSAC and the mapper draw at random: the same photos give the same poses
    if matcher not in MATCHERS:
        raise CaptureError(f"matcher={matcher!r}: must be one of {', '.join(MATCHERS)}")
    work_dir.mkdir(parents=True, exist_ok=True)
    database = work_dir / "database.db"
    reader = pycolmap.ImageReaderOptions()
    try:
        reader.camera_model = camera_model
    except Exception:
        raise CaptureError(f"camera_model={camera_model!r}: not a COLMAP camera model (e.g. SIMPLE_PINHOLE, PINHOLE, "
                           "SIMPLE_RADIAL, OPENCV)") from None
    mode = pycolmap.CameraMode.SINGLE if single_camera else pycolmap.CameraMode.PER_IMAGE
    stages = tqdm(total=3, desc="COLMAP", leave=False)
    stages.set_postfix_str("features")
    pycolmap.extract_features(database, image_dir, camera_mode=mode, reader_options=reader,
                              device=pycolmap.Device.auto)
    stages.update()
    stages.set_postfix_str(f"{matcher} matching")
    getattr(pycolmap, f"match_{matcher}")(database)
    stages.update()
    stages.set_postfix_str("mapping")
    sparse = work_dir / "sparse"
    sparse.mkdir(parents=True, exist_ok=True)
    models = pycolmap.incremental_mapping(database, image_dir, sparse)
    stages.update()
    stages.close()
    if not models:
        return None
    return max(models.values(), key=lambda r: r.num_reg_images())


def undistort(model, image_dir: Path, out_dir: Path):
    """Write pinhole images and the pinhole model of ``model`` into ``out_dir`` (``images/``, ``sparse/``); returns
    the undistorted reconstruction."""
    pycolmap = import_pycolmap()
    distorted = out_dir.parent / f"{out_dir.name}.distorted"
    distorted.mkdir(parents=True, exist_ok=True)
    model.write(distorted)
    pycolmap.undistort_images(out_dir, distorted, image_dir)
    shutil.rmtree(distorted)
    return pycolmap.Reconstruction(out_dir / "sparse")


def opengl_c2w(cam_from_world: np.ndarray) -> np.ndarray:
    """OpenGL camera-to-world ``(4, 4)`` (x right, y up, camera looks down -z) from COLMAP's world-to-camera
    ``(3, 4)`` (x right, y down, looks down +z)."""
    c2w = np.eye(4)
    c2w[:3, :3] = cam_from_world[:3, :3].T
    c2w[:3, 3] = -cam_from_world[:3, :3].T @ cam_from_world[:3, 3]
    c2w[:3, 1:3] *= -1.0
    return c2w


def model_cameras(model) -> dict:
    """Per registered image (by name): OpenGL ``c2w``, pinhole ``fx, fy, cx, cy``, ``w, h``, and the depth bounds
    of the sparse points it sees (0.1 and 99.9 percentiles, as LLFF's ``imgs2poses``)."""
    cameras = {}
    xyz = {pid: p.xyz for pid, p in model.points3D.items()}
    for image in model.images.values():
        if not image.has_pose:
            continue
        cam = image.camera
        fx, fy, cx, cy = pinhole_params(cam)
        w2c = image.cam_from_world().matrix() if callable(image.cam_from_world) else image.cam_from_world.matrix()
        seen = np.array([xyz[p.point3D_id] for p in image.points2D if p.has_point3D()])
        depths = (seen @ w2c[:3, :3].T + w2c[:3, 3])[:, 2] if len(seen) else np.array([0.1, 100.0])
        depths = depths[depths > 0] if (depths > 0).any() else np.array([0.1, 100.0])
        cameras[image.name] = {"c2w": opengl_c2w(w2c), "fx": fx, "fy": fy, "cx": cx, "cy": cy,
                               "w": int(cam.width), "h": int(cam.height),
                               "bounds": np.percentile(depths, [0.1, 99.9])}
    return dict(sorted(cameras.items()))


def pinhole_params(camera) -> tuple[float, float, float, float]:
    """``fx, fy, cx, cy`` of an (undistorted) pinhole COLMAP camera."""
    name = str(camera.model).rsplit(".", 1)[-1]
    p = [float(x) for x in camera.params]
    if name == "SIMPLE_PINHOLE":
        return p[0], p[0], p[1], p[2]
    if name == "PINHOLE":
        return p[0], p[1], p[2], p[3]
    raise CaptureError(f"camera model {name}: expected a pinhole model after undistortion")


# -- writing ----------------------------------------------------------------------------------------------------------
def write_transforms(cameras: dict, path: Path) -> None:
    """``transforms.json`` (nerfstudio / instant-ngp): shared intrinsics when all images share them, else per frame."""
    first = next(iter(cameras.values()))
    keys = ("fl_x", "fl_y", "cx", "cy", "w", "h")

    def intrinsics(c: dict) -> dict:
        return dict(zip(keys, (c["fx"], c["fy"], c["cx"], c["cy"], c["w"], c["h"])))

    shared = all(intrinsics(c) == intrinsics(first) for c in cameras.values())
    frames = [{"file_path": f"images/{name}", "transform_matrix": c["c2w"].tolist(),
               "colmap_near_far": [float(b) for b in c["bounds"]], **({} if shared else intrinsics(c))}
              for name, c in cameras.items()]
    data = {"camera_model": "PINHOLE", **(intrinsics(first) if shared else {}),
            "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0, "frames": frames}
    path.write_text(json.dumps(data, indent=2))


def write_poses_bounds(cameras: dict, path: Path) -> None:
    """``poses_bounds.npy`` (LLFF) in image-name order; one focal per image (the mean of ``fx`` and ``fy``)."""
    c2ws = np.stack([c["c2w"] for c in cameras.values()])
    bounds = np.stack([c["bounds"] for c in cameras.values()])
    rows = np.concatenate([llff_rows(c2ws[k:k + 1], bounds[k:k + 1], c["h"], c["w"], 0.5 * (c["fx"] + c["fy"]))
                           for k, c in enumerate(cameras.values())])
    np.save(path, rows)


def write_downscaled(images: Path, factors: tuple[int, ...] = FACTORS) -> None:
    """``images_<f>/`` beside ``images/`` for each factor (area averaging, LLFF's layout; sizes floored, which the
    LLFF loader accepts as it accepts rounded ones: :func:`nerfexp.data.llff.same_picture`)."""
    for factor in factors:
        out = images.parent / f"{images.name}_{factor}"
        out.mkdir(exist_ok=True)
        for path in list_images(images):
            with Image.open(path) as image:
                size = (max(1, image.width // factor), max(1, image.height // factor))
                image.convert("RGB").resize(size, Image.Resampling.BOX).save(out / f"{path.stem}.png")


# -- the whole run ----------------------------------------------------------------------------------------------------
def process_capture(input_path: Path, output: Path, num_frames: int = 100, max_size: int | None = 1600,
                    camera_model: str = "SIMPLE_RADIAL", matcher: str | None = None, single_camera: bool = True,
                    overwrite: bool = False) -> ProcessResult:
    """Photos (a folder) or a video -> a dataset folder ``output`` (see the module docstring)."""
    input_path, output = Path(input_path).expanduser(), Path(output).expanduser()
    if not input_path.exists():
        raise CaptureError(f"input={input_path}: no such file or folder")
    if output.exists() and not overwrite:
        raise CaptureError(f"output={output}: already exists; choose another folder or set overwrite=true")
    is_video = input_path.is_file()
    if is_video and input_path.suffix.lower() not in VIDEO_SUFFIXES:
        raise CaptureError(f"input={input_path}: neither a folder of images nor a video "
                           f"({', '.join(VIDEO_SUFFIXES)})")
    matcher = matcher or ("sequential" if is_video else "exhaustive")
    output.parent.mkdir(parents=True, exist_ok=True)
    work = output.parent / f".{output.name}.partial-{uuid.uuid4().hex[:8]}"
    seconds: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        raw = work / "input"
        paths = (video_frames(input_path, raw, num_frames, max_size) if is_video
                 else folder_images(input_path, raw, max_size))
        seconds["frames"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        model = solve_poses(raw, work / "colmap", camera_model, matcher, single_camera)
        seconds["colmap"] = time.perf_counter() - t0
        registered = model.num_reg_images() if model is not None else 0
        if registered < max(3, (len(paths) + 1) // 2):
            raise CaptureError(f"input={input_path}: COLMAP registered {registered} of {len(paths)} images; try "
                               "photos with more overlap, matcher=exhaustive, or a larger max_size")
        t0 = time.perf_counter()
        dataset = work / "dataset"
        pinhole = undistort(model, raw, dataset)
        (dataset / "sparse" / "0").mkdir(parents=True, exist_ok=True)
        for f in list((dataset / "sparse").glob("*.bin")):
            f.replace(dataset / "sparse" / "0" / f.name)
        cameras = model_cameras(pinhole)
        write_transforms(cameras, dataset / "transforms.json")
        write_poses_bounds(cameras, dataset / "poses_bounds.npy")
        for name in [p.name for p in list_images(dataset / "images")]:
            if name not in cameras:  # not registered: LLFF pairs images with poses by name order
                (dataset / "images" / name).unlink()
        write_downscaled(dataset / "images")
        for extra in ("stereo", "run-colmap-geometric.sh", "run-colmap-photometric.sh"):
            target = dataset / extra
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        seconds["undistort_and_write"] = time.perf_counter() - t0
        result = ProcessResult(str(output), registered, len(paths), float(model.compute_mean_reprojection_error()),
                               int(model.num_points3D()), seconds)
        (dataset / "process.json").write_text(json.dumps(asdict(result), indent=2))
        if output.exists():
            shutil.rmtree(output)
        dataset.replace(output)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)
