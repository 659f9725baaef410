"""The demo objects photographed in a textured room: opaque pictures from known cameras, with texture at every scale
on the floor and the wall, as structure from motion needs (the demo scene alone is checkers and white: too little
for SIFT). Tests and benchmarks of ``python -m nerfexp.process`` render photos or a video from these cameras and
compare the cameras COLMAP recovers with the known ones."""
from __future__ import annotations

import math

import numpy as np

from nerfexp.data.demo import trace_rays

FLOOR_Z = -0.62  # just under the demo's ground disc
WALL_RADIUS = 7.0
WALL_TOP = 4.0
TEXTURE_SIZE = 2048
FLOOR_TILE = 2.5 * WALL_RADIUS  # one texture covers the whole floor, another the whole wall: nothing repeats


def noise_texture(seed: int, size: int = TEXTURE_SIZE, n_shapes: int = 24000) -> np.ndarray:
    """``(size, size, 3)`` colours in [0, 1]: a "dead leaves" texture of random discs and squares of random colour
    and brightness, sizes from 2 to ~100 texels by a power law, later ones covering earlier ones: sharp edges and
    corners at every scale, nothing repeated (what SIFT finds and matches)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), (128, 128, 128))
    draw = ImageDraw.Draw(image)
    radii = 2.0 * (size / 20.0) ** rng.random(n_shapes)[np.argsort(rng.random(n_shapes))]
    radii = np.sort(radii)[::-1]  # large shapes first, small ones on top
    for r in radii:
        x, y = rng.random(2) * size
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        box = (x - r, y - r, x + r, y + r)
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    return np.asarray(image, dtype=np.float64) / 255.0


def sample_texture(texture: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear lookup of a tileable ``texture`` at ``(u, v)`` in tiles (1.0 = one tile): ``(..., 3)``."""
    size = texture.shape[0]
    x, y = np.mod(u, 1.0) * size, np.mod(v, 1.0) * size
    x0, y0 = np.floor(x).astype(int) % size, np.floor(y).astype(int) % size
    fx, fy = (x - np.floor(x))[..., None], (y - np.floor(y))[..., None]
    x1, y1 = (x0 + 1) % size, (y0 + 1) % size
    top = texture[y0, x0] * (1 - fx) + texture[y0, x1] * fx
    bottom = texture[y1, x0] * (1 - fx) + texture[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def room_colour(origins: np.ndarray, directions: np.ndarray, floor: np.ndarray, wall: np.ndarray) -> np.ndarray:
    """What rays that miss the objects see: the textured floor, the textured cylindrical wall, a grey ceiling."""
    colour = np.full(origins.shape, 0.8)
    d = directions / np.linalg.norm(directions, axis=-1, keepdims=True)
    # wall: |o_xy + t d_xy| = R, the far root (cameras stand inside)
    a = (d[:, :2] ** 2).sum(-1)
    b = 2 * (origins[:, :2] * d[:, :2]).sum(-1)
    c = (origins[:, :2] ** 2).sum(-1) - WALL_RADIUS ** 2
    t_wall = (-b + np.sqrt(np.maximum(b * b - 4 * a * c, 0.0))) / np.maximum(2 * a, 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(d[:, 2] < -1e-9, (FLOOR_Z - origins[:, 2]) / d[:, 2], np.inf)
    on_floor = t_floor < t_wall
    p = origins + np.where(on_floor, t_floor, t_wall)[:, None] * d
    if on_floor.any():
        q = p[on_floor]
        colour[on_floor] = sample_texture(floor, q[:, 0] / FLOOR_TILE, q[:, 1] / FLOOR_TILE)
    on_wall = ~on_floor & (p[:, 2] < WALL_TOP)
    if on_wall.any():
        q = p[on_wall]
        around = np.arctan2(q[:, 1], q[:, 0]) / (2 * math.pi)  # one texture once around the wall
        colour[on_wall] = sample_texture(wall, around, (q[:, 2] - FLOOR_Z) / (WALL_TOP - FLOOR_Z))
    return colour


def render_capture(c2ws: np.ndarray, width: int, height: int, focal: float, seed: int = 0) -> np.ndarray:
    """Photos ``(N, H, W, 3)`` uint8 of the demo objects in the textured room from OpenGL cameras ``c2ws``
    ``(N, 4, 4)`` (pinhole, principal point at the centre, rays through pixel centres)."""
    floor, wall = noise_texture(seed), noise_texture(seed + 1)
    jj, ii = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    dirs_cam = np.stack([(ii - width / 2) / focal, -(jj - height / 2) / focal, -np.ones_like(ii)], -1).reshape(-1, 3)
    out = np.zeros((len(c2ws), height, width, 3), dtype=np.uint8)
    for k, c2w in enumerate(np.asarray(c2ws, dtype=np.float64)):
        d = dirs_cam @ c2w[:3, :3].T
        o = np.broadcast_to(c2w[:3, 3], d.shape).copy()
        rgb, alpha, _ = trace_rays(o, d)
        colour = np.where(alpha[:, None] > 0, rgb, room_colour(o, d, floor, wall))
        out[k] = np.round(np.clip(colour, 0, 1) * 255).reshape(height, width, 3).astype(np.uint8)
    return out


def orbit_cameras(n: int, radius: float = 3.0, elevation_deg: float = 25.0, arc_deg: float = 360.0,
                  phase_deg: float = 0.0) -> np.ndarray:
    """``(n, 4, 4)`` OpenGL cameras evenly spaced along an arc about the z axis, looking at the origin."""
    end = arc_deg if arc_deg < 360.0 else 360.0 * (1 - 1 / max(n, 1))
    az = np.radians(phase_deg + np.linspace(0.0, end, n))
    el = math.radians(elevation_deg)
    pos = radius * np.stack([np.cos(az) * math.cos(el), np.sin(az) * math.cos(el), np.full(n, math.sin(el))], -1)
    z = pos / np.linalg.norm(pos, axis=-1, keepdims=True)  # OpenGL: the camera looks down -z
    x = np.cross([0.0, 0.0, 1.0], z)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    y = np.cross(z, x)
    c2w = np.tile(np.eye(4), (n, 1, 1))
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = x, y, z, pos
    return c2w


def box_blur(image: np.ndarray, k: int = 5) -> np.ndarray:
    """``image`` (uint8) averaged over (2k+1)^2 pixel boxes: a shaken frame of a hand-held video."""
    pad = np.pad(image.astype(np.float64), ((k, k), (k, k), (0, 0)), mode="edge")
    out = sum(pad[k + dy:k + dy + image.shape[0], k + dx:k + dx + image.shape[1]]
              for dy in range(-k, k + 1) for dx in range(-k, k + 1)) / (2 * k + 1) ** 2
    return out.astype(np.uint8)
