"""The in-memory form every dataset loader produces: images, alphas and cameras of one split."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from nerfexp.cameras import Intrinsics, RayBundle, box_near_far, ndc_rays, rays_from_pixels, sphere_near_far
from nerfexp.config import ConfigError, check_number

BACKGROUNDS = ("white", "black", "random")


@dataclass
class SceneSplit:
    """One split of a scene.

    ``images`` hold colour premultiplied by alpha, so compositing on any background is
    ``images + (1 - alphas) * background`` and area-averaging commutes with compositing.

    Shapes: images ``(N, H, W, 3)`` float32 in [0, 1]; alphas ``(N, H, W, 1)``; c2w ``(N, 4, 4)``.
    """

    images: Tensor
    alphas: Tensor
    c2w: Tensor
    intrinsics: Intrinsics
    near: float
    far: float
    names: list[str] = field(default_factory=list)
    ndc: bool = False  # forward-facing scenes: rays are mapped to NDC, t in [0, 1]
    bounding_radius: float | None = None  # object inside this sphere: each ray samples only where it crosses it
    bounding_box: float | None = None  # object inside [-b, b]^3: each ray samples only where it crosses the box
    unbounded: bool = False  # the scene goes on behind far (LLFF, unmasked photos): the last sample takes the rest
    sources: list[str] = field(default_factory=list)  # each frame's file, relative to the dataset root
    # captures: each view's own ray range (N, 2) (from its sparse points' depths) and pinhole (N, 4) fx, fy, cx, cy
    # where views differ; None: ``near``/``far`` and ``intrinsics`` hold for every view
    view_near_far: Tensor | None = None
    view_intrinsics: Tensor | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def height(self) -> int:
        return self.images.shape[1]

    @property
    def width(self) -> int:
        return self.images.shape[2]

    def pixel_rays(self, image: Tensor, i: Tensor, j: Tensor) -> RayBundle:
        """Rays through pixels ``(image, i, j)`` (each ``(B,)``), in NDC when the split is forward-facing."""
        k = (self.view_intrinsics[image] if self.view_intrinsics is not None
             else self.intrinsics.as_tensor().to(self.c2w.device))
        near, far = ((self.view_near_far[image, 0], self.view_near_far[image, 1]) if self.view_near_far is not None
                     else (self.near, self.far))
        return self.in_scene(rays_from_pixels(self.c2w[image], k, i, j, near, far))

    def in_scene(self, rays: RayBundle) -> RayBundle:
        """World-space rays between ``near`` and ``far`` -> the rays the split's pipeline renders: in NDC
        (mapped with the split's own focal length, whatever camera cast them), or cut to the scene's sphere
        or box. Cameras that are not the split's (a viewer's) go through here too."""
        rays.unbounded = self.unbounded
        if self.ndc:
            rays = ndc_rays(rays, self.intrinsics.fx, self.intrinsics.width, self.intrinsics.height)
        elif self.bounding_radius is not None:
            rays = sphere_near_far(rays, self.bounding_radius)
        if self.bounding_box is not None and not self.ndc:
            rays = box_near_far(rays, self.bounding_box)
        return rays

    def rays(self, index: int) -> RayBundle:
        """All rays of image ``index``, row-major: ray ``j * width + i`` goes through pixel ``(i, j)``."""
        jj, ii = torch.meshgrid(torch.arange(self.height, device=self.c2w.device),
                                torch.arange(self.width, device=self.c2w.device), indexing="ij")
        image = torch.full((self.height * self.width,), index, dtype=torch.long, device=self.c2w.device)
        return self.pixel_rays(image, ii.reshape(-1), jj.reshape(-1))

    def with_poses(self, c2w: Tensor, scale: float = 1.0) -> "SceneSplit":
        """The same camera model (near/far, NDC, bounds) at new poses ``(N, 4, 4)``, images ``scale`` times as
        large, without pixels: for rendering paths."""
        n = c2w.shape[0]
        intr = self.intrinsics.scaled(1.0 / scale) if scale != 1.0 else self.intrinsics
        blank = torch.zeros(1, 1, 1, 1).expand(n, intr.height, intr.width, 3)
        return SceneSplit(blank, blank[..., :1], c2w.float().to(self.c2w.device), intr, self.near,
                          self.far, [f"{k:04d}" for k in range(n)], self.ndc, self.bounding_radius,
                          self.bounding_box, self.unbounded)

    def pixel_colors(self, image: Tensor, i: Tensor, j: Tensor, background: Tensor) -> Tensor:
        """Target colours ``(B, 3)`` of pixels ``(image, i, j)`` composited on ``background`` ``(3,)`` or ``(B, 3)``."""
        return self.images[image, j, i] + (1.0 - self.alphas[image, j, i]) * background

    def to(self, device: torch.device | str) -> "SceneSplit":
        """A copy with images, alphas and poses on ``device``."""
        def moved(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return SceneSplit(self.images.to(device), self.alphas.to(device), self.c2w.to(device), self.intrinsics,
                          self.near, self.far, list(self.names), self.ndc, self.bounding_radius, self.bounding_box,
                          self.unbounded, list(self.sources), moved(self.view_near_far), moved(self.view_intrinsics))

    def composited(self, index: int, background: Tensor) -> Tensor:
        """Image ``index`` composited on ``background`` (3,): ``(H, W, 3)``."""
        return self.images[index] + (1.0 - self.alphas[index]) * background


def check_near_far(near: float | None, far: float | None) -> None:
    """``near`` >= 0 and ``far`` > ``near`` where given (config keys ``near``/``far``)."""
    check_number("near", near, float, low=0, nullable=True)
    check_number("far", far, float, low=0, low_open=True, nullable=True)
    if near is not None and far is not None and not near < far:
        raise ConfigError(f"near={near} and far={far}: near must be < far")


def background_color(mode: str, n: int | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Background colour for ``mode``: ``(3,)`` for white/black, ``(n, 3)`` uniform random colours for random."""
    if mode == "white":
        return torch.ones(3)
    if mode == "black":
        return torch.zeros(3)
    if mode == "random":
        return torch.rand(n or 1, 3, generator=generator)
    raise ValueError(f"dataset.background={mode!r} is not one of {BACKGROUNDS}")


def eval_background(mode: str) -> Tensor:
    """Fixed colour used for evaluation: random backgrounds are evaluated on white."""
    return background_color("white" if mode == "random" else mode)


def area_downscale(x: Tensor, factor: int) -> Tensor:
    """Average ``(N, H, W, C)`` over ``factor`` x ``factor`` blocks (crops H, W to multiples of ``factor``)."""
    if factor == 1:
        return x
    n, h, w, c = x.shape
    h2, w2 = h // factor, w // factor
    x = x[:, : h2 * factor, : w2 * factor]
    return x.reshape(n, h2, factor, w2, factor, c).mean(dim=(2, 4))
