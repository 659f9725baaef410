"""Training ray batches: which pixels each step trains on.

The default mode walks a fresh permutation of *all* training pixels every epoch, so every ray is used exactly once
per epoch and no image is favoured (the classic bug of shuffling only the first images' rays cannot happen).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class PixelBatch:
    """Pixel coordinates of one batch: image index, column and row, each ``(B,)`` int64."""

    image: Tensor
    i: Tensor
    j: Tensor


class RayBatcher:
    """Yields pixel batches over ``n_images`` images of ``height`` x ``width``.

    Args:
        batch_rays: rays per step.
        mode: ``all_images`` (epoch-wise permutation of every pixel) or ``single_image`` (one random image per step,
            random pixels of it, as in the original NeRF code for LLFF).
        precrop_frac, precrop_steps: for the first ``precrop_steps`` steps, sample only from the central
            ``precrop_frac`` of each image (helps object-centred scenes avoid a blank start).
        seed: seed of the batcher's own generator (independent of model init).
    """

    def __init__(self, n_images: int, height: int, width: int, batch_rays: int, mode: str = "all_images",
                 precrop_frac: float = 0.5, precrop_steps: int = 0, seed: int = 0):
        if mode not in ("all_images", "single_image"):
            raise ValueError(f"trainer.batching={mode!r} must be 'all_images' or 'single_image'")
        self.n_images, self.height, self.width = n_images, height, width
        self.batch_rays = batch_rays
        self.mode = mode
        self.precrop_frac, self.precrop_steps = precrop_frac, precrop_steps
        self.generator = torch.Generator().manual_seed(seed)
        self.n_pixels = n_images * height * width
        self.perm = torch.randperm(self.n_pixels, generator=self.generator)
        self.cursor = 0
        self.epoch = 0

    def _split(self, flat: Tensor) -> PixelBatch:
        hw = self.height * self.width
        image = flat // hw
        rem = flat % hw
        return PixelBatch(image, rem % self.width, rem // self.width)

    def _next_epoch_slice(self, n: int) -> Tensor:
        out = []
        while n > 0:
            if self.cursor >= self.n_pixels:
                self.perm = torch.randperm(self.n_pixels, generator=self.generator)
                self.cursor = 0
                self.epoch += 1
            take = min(n, self.n_pixels - self.cursor)
            out.append(self.perm[self.cursor:self.cursor + take])
            self.cursor += take
            n -= take
        return torch.cat(out)

    def _precrop(self, n: int) -> PixelBatch:
        dh = max(int(self.height // 2 * self.precrop_frac), 1)
        dw = max(int(self.width // 2 * self.precrop_frac), 1)
        image = torch.randint(self.n_images, (n,), generator=self.generator)
        j = torch.randint(self.height // 2 - dh, self.height // 2 + dh, (n,), generator=self.generator)
        i = torch.randint(self.width // 2 - dw, self.width // 2 + dw, (n,), generator=self.generator)
        return PixelBatch(image, i, j)

    def next(self, step: int) -> PixelBatch:
        """Pixels for training step ``step``."""
        if step < self.precrop_steps:
            return self._precrop(self.batch_rays)
        if self.mode == "single_image":
            image = torch.randint(self.n_images, (1,), generator=self.generator).expand(self.batch_rays)
            flat = torch.randperm(self.height * self.width, generator=self.generator)[: self.batch_rays]
            return PixelBatch(image.clone(), flat % self.width, flat // self.width)
        return self._split(self._next_epoch_slice(self.batch_rays))

    def state_dict(self) -> dict:
        return {"perm": self.perm.clone(), "cursor": self.cursor, "epoch": self.epoch,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.perm = state["perm"].clone()
        self.cursor = int(state["cursor"])
        self.epoch = int(state["epoch"])
        self.generator.set_state(state["generator"])
