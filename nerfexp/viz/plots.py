"""Diagnostic plots of a trained pipeline: where the sampler puts samples along a ray and why.

:func:`plot_ray_samples` draws, for one ray, the stratified coarse samples, the coarse pass's compositing weights,
and the hierarchical (importance) samples the fine pass adds, so one sees the fine samples gather at the surface.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from nerfexp.cameras import RayBundle
from nerfexp.data.scene import SceneSplit
from nerfexp.pipelines.base import Pipeline
from nerfexp.samplers.base import RenderedPass


def center_ray(split: SceneSplit, index: int = 0) -> RayBundle:
    """The ray through the centre pixel of image ``index`` of ``split`` (a bundle of one ray)."""
    image = torch.tensor([index], device=split.c2w.device)
    i = torch.tensor([split.width // 2], device=split.c2w.device)
    j = torch.tensor([split.height // 2], device=split.c2w.device)
    return split.pixel_rays(image, i, j)


@torch.no_grad()  # not inference_mode: SDF pipelines take autograd normals
def ray_samples(pipeline: Pipeline, ray: RayBundle, background: Tensor | None = None,
                training: bool = False) -> dict:
    """Render one ray through the pipeline and return where each pass sampled it.

    Args:
        pipeline: any :class:`nerfexp.pipelines.base.Pipeline` (its own forward pass is traced: nothing here knows
            the sampler).
        ray: a bundle of exactly one ray (on the pipeline's device).
        training: draw jittered (training) samples instead of the deterministic evaluation ones.
    Returns:
        numpy arrays: the first pass's ``t_coarse (S,)`` and ``weights_coarse (S,)``; the second pass's ``t_fine``
        and ``weights_fine`` (empty with one pass); ``t_importance`` (the samples placed by importance sampling,
        e.g. the fine pass's or NeuS's up-sampled ones; empty where there are none); floats ``near``, ``far``.
    """
    if len(ray) != 1:
        raise ValueError(f"ray_samples takes one ray, got a bundle of {len(ray)}")
    was_training = pipeline.training
    pipeline.eval()
    passes: list[RenderedPass] = []
    try:
        pipeline(ray, background, training=training, trace=passes)
    finally:
        pipeline.train(was_training)

    def valid(rendered: RenderedPass) -> tuple[Tensor, Tensor, Tensor]:
        s = rendered.samples
        keep = s.mask[0] if s.mask is not None else torch.ones_like(s.t[0], dtype=torch.bool)
        importance = s.importance[0] if s.importance is not None else torch.zeros_like(keep)
        return s.t[0][keep], rendered.weights[0][keep], importance[keep]

    t_coarse, w_coarse, imp_coarse = valid(passes[0])
    empty = t_coarse.new_zeros(0)
    t_fine, w_fine, imp_fine = valid(passes[-1]) if len(passes) > 1 else (empty, empty, imp_coarse[:0])
    importance = torch.cat([t_coarse[imp_coarse], t_fine[imp_fine]])
    out = {"t_coarse": t_coarse, "weights_coarse": w_coarse, "t_fine": t_fine, "weights_fine": w_fine,
           "t_importance": importance}
    result = {k: v.detach().float().cpu().numpy() for k, v in out.items()}
    result.update(near=float(ray.near[0, 0]), far=float(ray.far[0, 0]))
    return result


def plot_ray_samples(pipeline, ray: RayBundle, path: Path, background: Tensor | None = None,
                     title: str | None = None, training: bool = False) -> Path:
    """Plot one ray's coarse samples, coarse weights and fine samples to a PNG at ``path``; returns ``path``.

    Top: the coarse weights at the stratified samples (stems) and the fine pass's weights (line). Bottom: where
    the samples lie along the ray (depth ``t`` between near and far): coarse samples, importance samples, and a
    histogram of the importance samples.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = ray_samples(pipeline, ray, background, training)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax_w, ax_s) = plt.subplots(2, 1, figsize=(8, 5), sharex=True, gridspec_kw={"height_ratios": [2, 1.3]})
    ax_w.stem(s["t_coarse"], s["weights_coarse"], linefmt="C0-", markerfmt="C0o", basefmt=" ",
              label=f"coarse weights ({len(s['t_coarse'])} samples)")
    if len(s["t_fine"]):
        ax_w.plot(s["t_fine"], s["weights_fine"], "C3.-", lw=1, ms=3, label=f"fine weights ({len(s['t_fine'])})")
    ax_w.set_ylabel("compositing weight")
    ax_w.grid(alpha=0.3)
    ax_w.legend(fontsize=8, loc="upper right")
    if title:
        ax_w.set_title(title)
    ax_s.plot(s["t_coarse"], [1.0] * len(s["t_coarse"]), "|", color="C0", ms=14, label="coarse (stratified)")
    if len(s["t_importance"]):
        ax_s.plot(s["t_importance"], [0.0] * len(s["t_importance"]), "|", color="C3", ms=14,
                  label="fine (importance)")
        bins = max(len(s["t_coarse"]) - 1, 1)
        counts, edges = torch.histogram(torch.from_numpy(s["t_importance"]), bins=bins,
                                        range=(s["near"], s["far"]))
        counts = counts.numpy() / max(counts.max().item(), 1.0) * 0.8
        ax_s.bar(edges[:-1].numpy(), counts, width=(edges[1] - edges[0]).item(), bottom=-0.9, align="edge",
                 color="C3", alpha=0.3, label="fine sample density")
    ax_s.set_yticks([1.0, 0.0], ["coarse", "fine"])
    ax_s.set_ylim(-1.0, 1.6)
    ax_s.set_xlim(s["near"], s["far"])
    ax_s.set_xlabel("depth t along the ray")
    ax_s.legend(fontsize=8, loc="upper right", ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
