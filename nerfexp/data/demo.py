"""Procedural demo scene, written in the Blender / NeRF-synthetic format.

Used to get a small, self-contained, *exactly known* dataset for tests, demos and benchmarks, without
downloading the real NeRF-synthetic scenes. The scene is ray-traced analytically in numpy:

- a ground disc (capped cylinder) with a fine checkerboard on top,
- a large glossy sphere at the origin (strong Blinn-Phong highlight: view-dependent colour),
- a small sphere with thin horizontal stripes (4 cm period: high-frequency texture),
- a third sphere with a spherical checker and a moderate highlight,
- an axis-aligned box with per-face tints and a fine grid of lines,

lit by one directional light (with shadow rays) plus ambient light. Everything lies inside a ball of radius
``SCENE_RADIUS`` (1.2) around the origin; the background is empty (alpha 0), so loaders composite it on their
background colour (white for NeRF-synthetic).

Conventions (the same as :mod:`nerfexp.cameras`):

- ``c2w`` are OpenGL camera-to-world matrices: the camera looks down its local -z, +y up, +x right; world up is +z;
- pinhole intrinsics with ``focal = 0.5 * W / tan(0.5 * camera_angle_x)``, principal point ``(W/2, H/2)``;
- pixel ``(i=column, j=row)`` has its centre at image point ``(i + 0.5, j + 0.5)``; the camera-space direction for
  image point ``(u, v)`` is ``((u - W/2) / focal, -(v - H/2) / focal, -1)``;
- each pixel averages ``supersample x supersample`` sub-pixel samples at ``i + (k + 0.5) / supersample``, averaging
  *premultiplied* colour and alpha; the PNGs store *straight* (non-premultiplied) RGB, like Blender does, and 0 where
  alpha is 0.

Files written by :func:`write_demo_scene`: ``transforms_{train,val,test}.json`` (``camera_angle_x`` + ``frames`` with
``file_path`` like ``./train/r_0`` without extension and a 4x4 ``transform_matrix``), 8-bit RGBA PNGs
``{split}/r_{k}.png``, ``scene.json`` (spec, suggested near/far, object list) and, last, a ``.complete`` marker.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DemoSceneSpec",
    "SCENE_RADIUS",
    "SCENE_VERSION",
    "COMPLETE_MARKER",
    "analytic_sdf",
    "camera_poses",
    "ensure_demo_scene",
    "focal_length",
    "pixel_rays",
    "render_views",
    "scene_dir_name",
    "trace_rays",
    "write_demo_scene",
]

#: Bump when the scene content or the file layout changes: it is part of the cache key.
SCENE_VERSION = 1
#: Every object lies inside this distance from the origin.
SCENE_RADIUS = 1.2
#: Written last into a finished scene folder.
COMPLETE_MARKER = ".complete"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DemoSceneSpec:
    """What to render. Image size is ``resolution`` x ``resolution``; angles in radians."""

    n_train: int = 40
    n_val: int = 4
    n_test: int = 8
    resolution: int = 64  # width = height
    camera_angle_x: float = 0.69  # radians (~ lego's 0.6911)
    radius: float = 4.0  # distance of every camera from the origin
    supersample: int = 2  # sub-pixel samples per pixel along each axis
    seed: int = 0  # seed of the random training cameras


# --------------------------------------------------------------------------------------------------------------------
# Scene description
# --------------------------------------------------------------------------------------------------------------------

_LIGHT_DIR = np.array([0.35, -0.45, 0.82])
_LIGHT_DIR = _LIGHT_DIR / np.linalg.norm(_LIGHT_DIR)  # unit vector pointing *towards* the light
_AMBIENT = 0.3
_DIFFUSE = 0.7

# Spheres: (centre, radius). Index = object id.
_SPHERES = (
    (np.array([0.05, 0.10, -0.03]), 0.40),  # 0: large glossy sphere, contains the origin
    (np.array([-0.55, 0.50, -0.22]), 0.22),  # 1: thin horizontal stripes
    (np.array([-0.35, -0.55, -0.29]), 0.15),  # 2: spherical checker
)
_BOX_CENTER = np.array([0.50, -0.45, -0.25])  # 3: box, its bottom sunk 2 cm into the disc
_BOX_HALF = np.array([0.18, 0.18, 0.22])
_DISC_CENTER = np.array([0.0, 0.0, -0.50])  # 4: ground disc (capped cylinder along z)
_DISC_RADIUS = 1.0
_DISC_HALF_HEIGHT = 0.05
_N_OBJECTS = 5

# Material per object: specular strength and Blinn-Phong exponent.
_SPECULAR = (0.75, 0.25, 0.45, 0.0, 0.0)
_SHININESS = (60.0, 20.0, 30.0, 1.0, 1.0)

_OBJECTS_DESCRIPTION = [
    {"id": 0, "type": "sphere", "center": _SPHERES[0][0].tolist(), "radius": _SPHERES[0][1],
     "texture": "smooth red/orange bands", "specular": _SPECULAR[0]},
    {"id": 1, "type": "sphere", "center": _SPHERES[1][0].tolist(), "radius": _SPHERES[1][1],
     "texture": "yellow/green stripes along z, period 0.04", "specular": _SPECULAR[1]},
    {"id": 2, "type": "sphere", "center": _SPHERES[2][0].tolist(), "radius": _SPHERES[2][1],
     "texture": "magenta/white spherical checker", "specular": _SPECULAR[2]},
    {"id": 3, "type": "box", "center": _BOX_CENTER.tolist(), "half_extents": _BOX_HALF.tolist(),
     "texture": "blue, per-face tint, grid lines every 0.06", "specular": 0.0},
    {"id": 4, "type": "capped_cylinder_z", "center": _DISC_CENTER.tolist(), "radius": _DISC_RADIUS,
     "half_height": _DISC_HALF_HEIGHT, "texture": "checker 0.1 on top, brown bands on the side", "specular": 0.0},
]

_T_MIN = 1e-9
_CHUNK = 1 << 16  # rays per vectorised batch


# --------------------------------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------------------------------

def analytic_sdf(points: np.ndarray) -> np.ndarray:
    """Signed distance from ``points`` ``(..., 3)`` to the scene surface (union of all objects): ``(...)``.

    Negative inside objects. Exact for each object; the union (``min``) is exact outside and a bound inside.
    """
    p = np.asarray(points, dtype=np.float64)
    d = np.full(p.shape[:-1], np.inf)
    for center, radius in _SPHERES:
        d = np.minimum(d, np.linalg.norm(p - center, axis=-1) - radius)
    q = np.abs(p - _BOX_CENTER) - _BOX_HALF
    box = np.linalg.norm(np.maximum(q, 0.0), axis=-1) + np.minimum(q.max(axis=-1), 0.0)
    d = np.minimum(d, box)
    rel = p - _DISC_CENTER
    dr = np.hypot(rel[..., 0], rel[..., 1]) - _DISC_RADIUS
    dz = np.abs(rel[..., 2]) - _DISC_HALF_HEIGHT
    cyl = np.minimum(np.maximum(dr, dz), 0.0) + np.hypot(np.maximum(dr, 0.0), np.maximum(dz, 0.0))
    return np.minimum(d, cyl)


def _first_hit(t_near: np.ndarray, t_far: np.ndarray) -> np.ndarray:
    """Entry distance of a convex interval ``[t_near, t_far]`` (exit when starting inside); inf on a miss."""
    t = np.where(t_near > _T_MIN, t_near, t_far)
    return np.where((t_near <= t_far) & (t > _T_MIN), t, np.inf)


def _hit_sphere(o: np.ndarray, d: np.ndarray, center: np.ndarray, radius: float) -> np.ndarray:
    oc = o - center
    b = np.einsum("ij,ij->i", oc, d)
    c = np.einsum("ij,ij->i", oc, oc) - radius * radius
    disc = b * b - c
    s = np.sqrt(np.maximum(disc, 0.0))
    t_near = np.where(disc >= 0.0, -b - s, np.inf)
    t_far = np.where(disc >= 0.0, -b + s, -np.inf)
    return _first_hit(t_near, t_far)


def _slab(o: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry and exit of the ray in the slabs ``lo <= x <= hi`` (per column), intersected over columns."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t1 = (lo - o) * inv
        t2 = (hi - o) * inv
    t_lo = np.minimum(t1, t2)
    t_hi = np.maximum(t1, t2)
    # d == 0: inside the slab -> unbounded, outside -> empty.
    parallel = d == 0.0
    if parallel.any():
        inside = (o >= lo) & (o <= hi)
        t_lo = np.where(parallel, np.where(inside, -np.inf, np.inf), t_lo)
        t_hi = np.where(parallel, np.where(inside, np.inf, -np.inf), t_hi)
    return t_lo.max(axis=-1), t_hi.min(axis=-1)


def _hit_box(o: np.ndarray, d: np.ndarray) -> np.ndarray:
    return _first_hit(*_slab(o, d, _BOX_CENTER - _BOX_HALF, _BOX_CENTER + _BOX_HALF))


def _hit_disc(o: np.ndarray, d: np.ndarray) -> np.ndarray:
    rel = o - _DISC_CENTER
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    b = rel[:, 0] * d[:, 0] + rel[:, 1] * d[:, 1]
    c = rel[:, 0] ** 2 + rel[:, 1] ** 2 - _DISC_RADIUS ** 2
    disc = b * b - a * c
    vertical = a < 1e-18
    ok = disc >= 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.sqrt(np.maximum(disc, 0.0))
        c0 = np.where(ok, (-b - s) / a, np.inf)
        c1 = np.where(ok, (-b + s) / a, -np.inf)
    c0 = np.where(vertical, np.where(c <= 0.0, -np.inf, np.inf), c0)
    c1 = np.where(vertical, np.where(c <= 0.0, np.inf, -np.inf), c1)
    z0, z1 = _slab(o[:, 2:], d[:, 2:], np.array([-_DISC_HALF_HEIGHT]) + _DISC_CENTER[2],
                   np.array([_DISC_HALF_HEIGHT]) + _DISC_CENTER[2])
    return _first_hit(np.maximum(c0, z0), np.minimum(c1, z1))


def _intersect_all(o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``(n_objects, R)`` hit distances along unit directions (inf = miss)."""
    ts = [_hit_sphere(o, d, c, r) for c, r in _SPHERES]
    ts.append(_hit_box(o, d))
    ts.append(_hit_disc(o, d))
    return np.stack(ts)


def _normals(obj: np.ndarray, p: np.ndarray) -> np.ndarray:
    n = np.zeros_like(p)
    for k, (center, radius) in enumerate(_SPHERES):
        m = obj == k
        n[m] = (p[m] - center) / radius
    m = obj == 3
    if m.any():
        q = (p[m] - _BOX_CENTER) / _BOX_HALF
        axis = np.abs(q).argmax(axis=-1)
        nb = np.zeros_like(q)
        nb[np.arange(len(q)), axis] = np.sign(q[np.arange(len(q)), axis])
        n[m] = nb
    m = obj == 4
    if m.any():
        rel = p[m] - _DISC_CENTER
        r = np.hypot(rel[:, 0], rel[:, 1])
        cap = (np.abs(rel[:, 2]) - _DISC_HALF_HEIGHT) > (r - _DISC_RADIUS)
        side = np.stack([rel[:, 0], rel[:, 1], np.zeros_like(r)], -1) / np.maximum(r, 1e-12)[:, None]
        top = np.zeros_like(rel)
        top[:, 2] = np.sign(rel[:, 2])
        n[m] = np.where(cap[:, None], top, side)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def _checker(*coords: np.ndarray) -> np.ndarray:
    """1.0 / 0.0 checker pattern of the integer cells of ``coords``."""
    return (sum(np.floor(c) for c in coords) % 2.0).astype(np.float64)


def _mix(a, b, w: np.ndarray) -> np.ndarray:
    return np.asarray(a) * (1.0 - w[:, None]) + np.asarray(b) * w[:, None]


def _albedo(obj: np.ndarray, p: np.ndarray, n: np.ndarray) -> np.ndarray:
    col = np.zeros_like(p)
    # 0: large sphere, smooth bands in longitude and latitude.
    m = obj == 0
    if m.any():
        q = n[m]
        lon = np.arctan2(q[:, 1], q[:, 0])
        w = 0.5 + 0.5 * np.sin(3.0 * lon) * np.cos(2.0 * q[:, 2])
        col[m] = _mix([0.80, 0.12, 0.10], [0.95, 0.55, 0.15], w)
    # 1: small sphere, horizontal stripes 2 cm wide (4 cm period).
    m = obj == 1
    if m.any():
        w = _checker((p[m, 2] - _SPHERES[1][0][2]) / 0.02)
        col[m] = _mix([0.95, 0.80, 0.15], [0.10, 0.45, 0.20], w)
    # 2: third sphere, checker in spherical coordinates.
    m = obj == 2
    if m.any():
        q = n[m]
        lon = np.arctan2(q[:, 1], q[:, 0])
        lat = np.arcsin(np.clip(q[:, 2], -1.0, 1.0))
        w = _checker(lon * 6.0 / math.pi, lat * 6.0 / math.pi)
        col[m] = _mix([0.85, 0.15, 0.65], [0.95, 0.95, 0.95], w)
    # 3: box, tint per face and dark grid lines every 6 cm (1 cm wide).
    m = obj == 3
    if m.any():
        nb = n[m]
        tint = 0.75 + 0.25 * np.abs(nb) @ np.array([1.0, 0.6, 0.2])
        frac = np.mod((p[m] - _BOX_CENTER) / 0.06, 1.0)
        on_line = ((frac < 1.0 / 6.0) & (np.abs(nb) < 0.5)).any(axis=-1).astype(np.float64)
        base = np.array([0.20, 0.45, 0.85]) * tint[:, None]
        col[m] = _mix(base, [0.05, 0.08, 0.20], on_line)
    # 4: ground disc, 10 cm checker on the caps, brown bands on the side.
    m = obj == 4
    if m.any():
        pm = p[m]
        cap = np.abs(n[m, 2]) > 0.5
        w_cap = _checker(pm[:, 0] / 0.1, pm[:, 1] / 0.1)
        w_side = 0.5 + 0.5 * np.sin(np.arctan2(pm[:, 1], pm[:, 0]) * 24.0)
        col_cap = _mix([0.90, 0.90, 0.85], [0.25, 0.30, 0.40], w_cap)
        col_side = _mix([0.55, 0.40, 0.25], [0.35, 0.25, 0.15], w_side)
        col[m] = np.where(cap[:, None], col_cap, col_side)
    return col


def _trace_unit(o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trace ``(R, 3)`` rays with unit directions: straight RGB ``(R, 3)``, hit mask ``(R,)``, distance ``(R,)``."""
    rgb = np.zeros_like(o)
    t = np.full(o.shape[0], np.inf)
    # Only rays that come near the scene's bounding ball need the full intersection test.
    b = np.einsum("ij,ij->i", o, d)
    c = np.einsum("ij,ij->i", o, o) - (SCENE_RADIUS + 1e-3) ** 2
    near = (b * b - c >= 0.0) & ((-b + np.sqrt(np.maximum(b * b - c, 0.0))) > 0.0)
    idx = np.nonzero(near)[0]
    if idx.size == 0:
        return rgb, np.isfinite(t), t
    oi, di = o[idx], d[idx]
    ts = _intersect_all(oi, di)
    obj = ts.argmin(axis=0)
    ti = ts[obj, np.arange(idx.size)]
    hit = np.isfinite(ti)
    idx, oi, di, obj, ti = idx[hit], oi[hit], di[hit], obj[hit], ti[hit]
    t[idx] = ti
    if idx.size == 0:
        return rgb, np.isfinite(t), t
    p = oi + ti[:, None] * di
    n = _normals(obj, p)
    albedo = _albedo(obj, p, n)
    n_dot_l = n @ _LIGHT_DIR
    lit = n_dot_l > 0.0
    # Shadow rays towards the light, from slightly above the surface.
    vis = np.zeros(idx.size)
    if lit.any():
        so = p[lit] + 1e-6 * n[lit]
        sd = np.broadcast_to(_LIGHT_DIR, so.shape)
        vis[lit] = np.isinf(_intersect_all(so, np.ascontiguousarray(sd)).min(axis=0)).astype(np.float64)
    diffuse = _DIFFUSE * np.maximum(n_dot_l, 0.0) * vis
    half = _LIGHT_DIR - di
    half /= np.linalg.norm(half, axis=-1, keepdims=True)
    n_dot_h = np.maximum(np.einsum("ij,ij->i", n, half), 0.0)
    ks = np.asarray(_SPECULAR)[obj]
    shin = np.asarray(_SHININESS)[obj]
    spec = np.where(ks > 0.0, ks * n_dot_h ** shin, 0.0) * vis * lit
    rgb[idx] = np.clip(albedo * (_AMBIENT + diffuse)[:, None] + spec[:, None], 0.0, 1.0)
    return rgb, np.isfinite(t), t


def trace_rays(origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trace single rays (no antialiasing) against the scene.

    Args:
        origins, directions: ``(..., 3)``; directions need not be unit length.
    Returns:
        ``rgb (..., 3)`` straight shaded colour (0 on a miss), ``alpha (...)`` 1.0 on a hit else 0.0, and
        ``t (...)`` the ray parameter of the first hit in units of the given direction (``origin + t * direction``
        is on the surface), ``inf`` on a miss.
    """
    o = np.asarray(origins, dtype=np.float64)
    d = np.asarray(directions, dtype=np.float64)
    o, d = np.broadcast_arrays(o, d)
    shape = o.shape[:-1]
    o = o.reshape(-1, 3)
    d = d.reshape(-1, 3)
    norm = np.linalg.norm(d, axis=-1)
    du = d / norm[:, None]
    rgb = np.empty_like(o)
    alpha = np.empty(o.shape[0])
    t = np.empty(o.shape[0])
    for s in range(0, o.shape[0], _CHUNK):
        sl = slice(s, s + _CHUNK)
        rgb[sl], hit, t[sl] = _trace_unit(np.ascontiguousarray(o[sl]), np.ascontiguousarray(du[sl]))
        alpha[sl] = hit
    return rgb.reshape(*shape, 3), alpha.reshape(shape), (t / norm).reshape(shape)


# --------------------------------------------------------------------------------------------------------------------
# Cameras
# --------------------------------------------------------------------------------------------------------------------

def focal_length(spec: DemoSceneSpec) -> float:
    """Focal length in pixels: ``0.5 * W / tan(0.5 * camera_angle_x)``."""
    return 0.5 * spec.resolution / math.tan(0.5 * spec.camera_angle_x)


def _look_at_origin(positions: np.ndarray) -> np.ndarray:
    """OpenGL c2w ``(N, 4, 4)`` for cameras at ``positions`` looking at the origin, world up +z."""
    z = positions / np.linalg.norm(positions, axis=-1, keepdims=True)  # camera looks down -z
    x = np.cross(np.array([0.0, 0.0, 1.0]), z)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    y = np.cross(z, x)
    c2w = np.zeros((positions.shape[0], 4, 4))
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = x, y, z, positions
    c2w[:, 3, 3] = 1.0
    return c2w


def _spherical(radius: float, azimuth: np.ndarray, elevation: np.ndarray) -> np.ndarray:
    ce = np.cos(elevation)
    return radius * np.stack([ce * np.cos(azimuth), ce * np.sin(azimuth), np.sin(elevation)], axis=-1)


def camera_poses(spec: DemoSceneSpec, split: str) -> np.ndarray:
    """Camera-to-world matrices ``(N, 4, 4)`` float64 of ``split``; all cameras look at the origin from ``radius``.

    - ``train``: ``n_train`` random views (seeded by ``spec.seed``), uniform over the spherical zone with elevation
      between 10 and 70 degrees;
    - ``val``: ``n_val`` views evenly spaced on an orbit at 25 degrees elevation;
    - ``test``: ``n_test`` views evenly spaced on an orbit at 40 degrees elevation (a different azimuth phase).
    """
    if split == "train":
        rng = np.random.default_rng([spec.seed, 0x5EED])
        az = rng.uniform(0.0, 2.0 * math.pi, spec.n_train)
        sin_el = rng.uniform(math.sin(math.radians(10.0)), math.sin(math.radians(70.0)), spec.n_train)
        el = np.arcsin(sin_el)
    elif split == "val":
        az = 0.3 + 2.0 * math.pi * np.arange(spec.n_val) / max(spec.n_val, 1)
        el = np.full(spec.n_val, math.radians(25.0))
    elif split == "test":
        az = 0.1 + 2.0 * math.pi * np.arange(spec.n_test) / max(spec.n_test, 1)
        el = np.full(spec.n_test, math.radians(40.0))
    else:
        raise ValueError(f"split={split!r} is not one of {SPLITS}")
    if az.size == 0:
        return np.zeros((0, 4, 4))
    return _look_at_origin(_spherical(spec.radius, az, el))


def pixel_rays(spec: DemoSceneSpec, c2w: np.ndarray, supersample: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """World rays of one camera: ``origins, directions`` each ``(H*s, W*s, 3)`` for ``s = supersample``.

    Sample ``(row, col)`` goes through image point ``u = (col + 0.5) / s``, ``v = (row + 0.5) / s`` (so with ``s = 1``
    through the pixel centres); directions have camera-space z = -1 (not unit length).
    """
    res, s = spec.resolution, int(supersample)
    f = focal_length(spec)
    uv = (np.arange(res * s) + 0.5) / s
    u, v = np.meshgrid(uv, uv, indexing="xy")  # u varies along columns, v along rows
    dirs_cam = np.stack([(u - res / 2.0) / f, -(v - res / 2.0) / f, -np.ones_like(u)], axis=-1)
    c2w = np.asarray(c2w, dtype=np.float64)
    dirs = dirs_cam @ c2w[:3, :3].T
    origins = np.broadcast_to(c2w[:3, 3], dirs.shape)
    return origins, dirs


def render_views(spec: DemoSceneSpec, c2ws: np.ndarray) -> np.ndarray:
    """Render cameras ``c2ws`` ``(N, 4, 4)`` -> ``(N, H, W, 4)`` float32 RGBA in [0, 1].

    Colour is *straight* (not premultiplied): RGB is the premultiplied average of the ``supersample**2`` sub-pixel
    samples divided by alpha where alpha > 0, and 0 where alpha == 0. Alpha is the fraction of sub-samples that hit.
    """
    c2ws = np.asarray(c2ws, dtype=np.float64).reshape(-1, 4, 4)
    res, s = spec.resolution, int(spec.supersample)
    if s < 1 or res < 1:
        raise ValueError(f"resolution={res} and supersample={s} must be positive")
    out = np.zeros((c2ws.shape[0], res, res, 4), dtype=np.float32)
    for k, c2w in enumerate(c2ws):
        o, d = pixel_rays(spec, c2w, s)
        rgb, alpha, _ = trace_rays(o, d)
        premult = np.concatenate([rgb * alpha[..., None], alpha[..., None]], axis=-1)
        premult = premult.reshape(res, s, res, s, 4).mean(axis=(1, 3))
        a = premult[..., 3:]
        with np.errstate(divide="ignore", invalid="ignore"):
            straight = np.where(a > 0.0, premult[..., :3] / a, 0.0)
        out[k, ..., :3] = np.clip(straight, 0.0, 1.0)
        out[k, ..., 3] = a[..., 0]
    return out


# --------------------------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------------------------

def _to_uint8(rgba: np.ndarray) -> np.ndarray:
    img = np.round(np.clip(rgba, 0.0, 1.0) * 255.0).astype(np.uint8)
    img[img[..., 3] == 0, :3] = 0
    return img


def _write_png(path: Path, rgba8: np.ndarray) -> None:
    try:
        import imageio.v3 as iio

        iio.imwrite(path, rgba8, extension=".png")
    except ImportError:  # pragma: no cover - imageio is a dependency, Pillow is the fallback
        from PIL import Image

        Image.fromarray(rgba8).save(path, format="PNG")


def _spec_dict(spec: DemoSceneSpec) -> dict:
    return {k: (float(v) if isinstance(v, float) else v) for k, v in asdict(spec).items()}


def _write_files(root: Path, spec: DemoSceneSpec) -> None:
    for split in SPLITS:
        c2ws = camera_poses(spec, split)
        (root / split).mkdir(parents=True, exist_ok=True)
        images = render_views(spec, c2ws)
        frames = []
        for k, (c2w, img) in enumerate(zip(c2ws, images)):
            _write_png(root / split / f"r_{k}.png", _to_uint8(img))
            frames.append({"file_path": f"./{split}/r_{k}", "transform_matrix": c2w.tolist()})
        meta = {"camera_angle_x": float(spec.camera_angle_x), "frames": frames}
        (root / f"transforms_{split}.json").write_text(json.dumps(meta, indent=2))
    scene = {
        "generator": "nerfexp.data.demo",
        "scene_version": SCENE_VERSION,
        "spec": _spec_dict(spec),
        "focal": focal_length(spec),
        "scene_radius": SCENE_RADIUS,
        "near": max(spec.radius - SCENE_RADIUS - 0.2, 0.0),
        "far": spec.radius + SCENE_RADIUS + 0.2,
        "background": "transparent (alpha 0); composite on white like NeRF-synthetic",
        "light_direction": _LIGHT_DIR.tolist(),
        "objects": _OBJECTS_DESCRIPTION,
    }
    (root / "scene.json").write_text(json.dumps(scene, indent=2))


def _is_complete(path: Path) -> bool:
    return (path / COMPLETE_MARKER).is_file()


def _looks_like_demo_scene(path: Path) -> bool:
    return _is_complete(path) or (path / "scene.json").is_file() or not any(path.iterdir())


def _write_atomic(out_dir: Path, spec: DemoSceneSpec, replace: bool) -> Path:
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        _write_files(tmp, spec)
        (tmp / COMPLETE_MARKER).write_text(json.dumps({"scene_version": SCENE_VERSION, "time": time.time()}))
        if out_dir.exists():
            if not replace and _is_complete(out_dir):  # someone else finished the same scene meanwhile
                shutil.rmtree(tmp, ignore_errors=True)
                return out_dir
            if not out_dir.is_dir() or not _looks_like_demo_scene(out_dir):
                raise FileExistsError(f"{out_dir} exists and is not a demo scene folder; not overwriting it")
            trash = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:12]}"
            out_dir.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)
        try:
            tmp.rename(out_dir)
        except OSError:
            if not replace and _is_complete(out_dir):
                shutil.rmtree(tmp, ignore_errors=True)
                return out_dir
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def write_demo_scene(out_dir: Path, spec: DemoSceneSpec) -> Path:
    """Render the whole scene and write it to ``out_dir`` in Blender format; returns ``out_dir``.

    Files are written into a temporary sibling folder, the ``.complete`` marker last, which is then renamed to
    ``out_dir``: an interrupted run leaves no folder at ``out_dir`` (only a hidden ``.<name>.tmp-*``). An existing
    demo scene (or empty folder) at ``out_dir`` is replaced; any other existing folder raises ``FileExistsError``.
    """
    return _write_atomic(Path(out_dir), spec, replace=True)


def scene_dir_name(spec: DemoSceneSpec) -> str:
    """Folder name for ``spec``: ``demo_<resolution>px_<hash of the spec fields and SCENE_VERSION>``."""
    key = json.dumps({"version": SCENE_VERSION, "spec": _spec_dict(spec)}, sort_keys=True)
    return f"demo_{spec.resolution}px_{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def ensure_demo_scene(cache_dir: Path, spec: DemoSceneSpec) -> Path:
    """Return ``cache_dir / scene_dir_name(spec)``, writing the scene there first unless it is already complete."""
    out_dir = Path(cache_dir).expanduser() / scene_dir_name(spec)
    if _is_complete(out_dir):
        return out_dir
    return _write_atomic(out_dir, spec, replace=False)
