"""NeuS volume rendering of a signed-distance field: unbiased SDF-to-opacity conversion per ray section."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from nerfexp.cameras import RayBundle
from nerfexp.config import check_number
from nerfexp.fields.base import FieldOutputs
from nerfexp.samplers.base import RaySamples


def neus_alpha(sdf: Tensor, cos: Tensor, dists: Tensor, inv_s: Tensor | float, cos_anneal: float = 1.0) -> Tensor:
    """Opacity of each ray section from the SDF at its midpoint (NeuS, eq. 13, with its cosine annealing).

    The SDF at the section's ends is estimated from the midpoint value and the slope along the ray, then
    ``alpha = max((Phi(s f_prev) - Phi(s f_next)) / Phi(s f_prev), 0)`` with ``Phi`` the logistic sigmoid: the
    transmittance through a plane is then ``Phi(s f(t)) / Phi(s f(t_0))``, so the weights peak at the surface.

    Args:
        sdf: ``(R, S)`` SDF at the section midpoints.
        cos: ``(R, S)`` dot product of the ray direction (unit) and the SDF gradient.
        dists: ``(R, S)`` section lengths, world units.
        inv_s: sharpness ``s`` (inverse standard deviation of the logistic density).
        cos_anneal: 0 -> slopes only ever count as entering the surface (early training), 1 -> the true slope.
    Returns:
        ``(R, S)`` alphas in [0, 1].
    """
    # entering the surface the slope is negative; annealing blends from "always entering" to the true cosine
    slope = -(torch.relu(-cos * 0.5 + 0.5) * (1.0 - cos_anneal) + torch.relu(-cos) * cos_anneal)
    f_next = sdf + slope * dists * 0.5
    f_prev = sdf - slope * dists * 0.5
    cdf_prev = torch.sigmoid(f_prev * inv_s)
    cdf_next = torch.sigmoid(f_next * inv_s)
    return ((cdf_prev - cdf_next + 1e-5) / (cdf_prev + 1e-5)).clamp(0.0, 1.0)


def alpha_weights(alpha: Tensor) -> Tensor:
    """``w_i = alpha_i prod_{j<i} (1 - alpha_j)``, ``(R, S)``."""
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha + 1e-7], dim=-1), dim=-1)[:, :-1]
    return alpha * trans


class NeuSRenderer(nn.Module):
    """NeuS's renderer (see :class:`nerfexp.renderers.base.Renderer`): learnable sharpness
    ``s = exp(10 * variance)``, annealed slopes, and in training the eikonal term as ``regularizer``.

    Samples are section midpoints inside the SDF's sphere (the NeuS sampler clips rays to it); what a ray does not
    hit there shows the background colour (the dataset's, as for the volume renderer).

    Args:
        init_variance: initial ``variance`` (``s = exp(10 * variance)``; 0.3 gives s = 20).
        cos_anneal_steps: training steps over which slopes go from "always entering" to the true cosine (0: none).
        eikonal_weight: weight of :func:`eikonal_loss` in the training loss.
        render_min_weight: when rendering (not training), sections whose weight, estimated from the SDF the
            sampler found at their ends, stays below this (and whose neighbours' does too) are not queried: they add
            nothing a picture shows, and a NeuS view queries the field at 64 samples per ray otherwise (0: query
            every section).
    """

    geometry = "sdf"
    density_noise_std = 0.0  # an SDF has no raw density to perturb

    def __init__(self, init_variance: float = 0.3, cos_anneal_steps: int = 0, eikonal_weight: float = 0.1,
                 render_min_weight: float = 1e-3):
        super().__init__()
        check_number("init_variance", init_variance, float)
        check_number("cos_anneal_steps", cos_anneal_steps, int, low=0)
        check_number("eikonal_weight", eikonal_weight, float, low=0)
        check_number("render_min_weight", render_min_weight, float, low=0, high=1)
        self.render_min_weight = float(render_min_weight)
        self.variance = nn.Parameter(torch.tensor(float(init_variance)))
        self.cos_anneal_steps, self.eikonal_weight = cos_anneal_steps, eikonal_weight
        self.cos_anneal = 1.0 if cos_anneal_steps <= 0 else 0.0

    def inv_s(self) -> Tensor:
        return torch.exp(self.variance * 10.0).clamp(1e-6, 1e6)

    def update(self, step: int) -> None:
        """Per-step schedule: the cosine annealing ratio."""
        self.cos_anneal = 1.0 if self.cos_anneal_steps <= 0 else min(1.0, step / self.cos_anneal_steps)

    def state(self) -> dict[str, float]:
        return {"inv_s": float(self.inv_s().detach())}

    def visible_sections(self, samples: RaySamples) -> Tensor | None:
        """``(R, S)`` the sections worth querying when rendering: weight (from the SDF at the section ends,
        ``samples.section_sdf``, at this renderer's sharpness) at least ``render_min_weight``, and their
        neighbours. None where that cannot be told (no section SDF, or ``render_min_weight`` 0)."""
        sdf = samples.section_sdf
        if sdf is None or self.render_min_weight <= 0:
            return None
        # a section's far end is the next section's start; the last one's, where the ray leaves the sphere, is
        # not known: taken equal to its start (its neighbour keeps it when the surface is there)
        cdf = torch.sigmoid(sdf * self.inv_s())
        cdf_next = torch.cat([cdf[:, 1:], cdf[:, -1:]], dim=-1)
        alpha = ((cdf - cdf_next + 1e-5) / (cdf + 1e-5)).clamp(0.0, 1.0) * (samples.deltas > 0)
        seen = alpha_weights(alpha) >= self.render_min_weight
        none = torch.zeros_like(seen[:, :1])
        return seen | torch.cat([seen[:, 1:], none], dim=-1) | torch.cat([none, seen[:, :-1]], dim=-1)

    def forward(self, field_out: FieldOutputs, samples: RaySamples, rays: RayBundle, background: Tensor | None,
                training: bool = False) -> dict[str, Tensor]:
        """Composite sections: ``field_out.sdf (R, S)`` at the midpoints ``samples.t``, ``field_out.gradient
        (R, S, 3)``, section lengths ``samples.deltas`` (world units; 0: no section, nothing is seen there).

        Returns ``rgb (R, 3)``, ``depth``, ``disp``, ``acc`` ``(R,)``, ``normal (R, 3)`` (opacity-weighted unit
        normals), ``weights (R, S)``, and in training ``regularizer``."""
        grad = field_out.gradient
        unit_dirs = torch.nn.functional.normalize(rays.directions, dim=-1)
        cos = (unit_dirs.unsqueeze(1) * grad).sum(-1)
        alpha = neus_alpha(field_out.sdf, cos, samples.deltas, self.inv_s(), self.cos_anneal if training else 1.0)
        inside = samples.deltas > 0
        alpha = alpha * inside  # a ray that misses the sphere has only empty sections: the background
        weights = alpha_weights(alpha)
        acc = weights.sum(-1)
        rgb = (weights.unsqueeze(-1) * field_out.rgb).sum(-2)
        if background is not None:
            rgb = rgb + (1.0 - acc).unsqueeze(-1) * background
        depth = (weights * samples.t).sum(-1)
        disp = 1.0 / torch.clamp(depth / torch.clamp(acc, min=1e-10), min=1e-10)
        normal = (weights.unsqueeze(-1) * torch.nn.functional.normalize(grad, dim=-1)).sum(-2)
        out = {"rgb": rgb, "depth": depth, "disp": disp, "acc": acc, "weights": weights, "normal": normal}
        if training:  # sections inside the sphere are those of non-zero length
            out["regularizer"] = self.eikonal_weight * eikonal_loss(grad, inside)
        return out


def eikonal_loss(grad: Tensor, inside: Tensor) -> Tensor:
    """``mean((|grad| - 1)^2)`` over the samples where ``inside`` is true (the SDF's sphere, as NeuS counts it).

    Args:
        grad: ``(..., 3)`` SDF gradients; inside: ``(...)`` bool.
    Returns:
        a scalar (0 when no sample is inside).
    """
    err = (grad.norm(dim=-1) - 1.0) ** 2
    weight = inside.to(err.dtype)
    return (err * weight).sum() / weight.sum().clamp(min=1.0)
