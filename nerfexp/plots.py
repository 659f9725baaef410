"""Diagnostic plots of a trained pipeline: where the sampler puts samples along a ray and why.

:func:`plot_ray_samples` draws, for one ray, the stratified coarse samples, the coarse pass's compositing weights,
and the hierarchical (importance) samples the fine pass adds, so one sees the fine samples gather at the surface.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nerfexp.cameras import RayBundle, sphere_near_far
from nerfexp.data.scene import SceneSplit
from nerfexp.samplers.stratified import stratified_t


def center_ray(split: SceneSplit, index: int = 0) -> RayBundle:
    """The ray through the centre pixel of image ``index`` of ``split`` (a bundle of one ray)."""
    image = torch.tensor([index], device=split.c2w.device)
    i = torch.tensor([split.width // 2], device=split.c2w.device)
    j = torch.tensor([split.height // 2], device=split.c2w.device)
    return split.pixel_rays(image, i, j)


@torch.no_grad()
def ray_samples(pipeline, ray: RayBundle, background: Tensor | None = None, training: bool = False) -> dict:
    """Run the pipeline's sampler and fields on one ray and return what it sampled.

    Args:
        pipeline: a :class:`nerfexp.pipeline.NeRFPipeline`.
        ray: a bundle of exactly one ray (on the pipeline's device).
        training: draw jittered (training) samples instead of the deterministic evaluation ones.
    Returns:
        numpy arrays: ``t_coarse (S,)``, ``weights_coarse (S,)``, ``t_importance (I,)`` (the samples the fine pass
        adds, empty without one), ``t_fine (S + I,)`` and ``weights_fine (S + I,)`` (empty without a fine pass),
        and floats ``near``, ``far``.
    """
    if len(ray) != 1:
        raise ValueError(f"ray_samples takes one ray, got a bundle of {len(ray)}")
    was_training = pipeline.training
    pipeline.eval()
    try:
        if hasattr(pipeline.sampler, "march"):  # ray marching: one pass, the samples the occupancy grid kept
            return marched_ray_samples(pipeline, ray, background, training)
        if hasattr(pipeline.sampler, "sample"):  # SDF up-sampling: uniform samples, then samples at the surface
            return sdf_ray_samples(pipeline, ray, background, training)
        d_enc = pipeline.dir_encoder(ray.viewdirs)
        t_coarse = pipeline.sampler.coarse(ray, training)
        rgb, sigma = pipeline.query(pipeline.coarse_field, ray, t_coarse, d_enc)
        coarse = pipeline.composite(rgb, sigma, t_coarse, ray, background)
        out = {"t_coarse": t_coarse[0], "weights_coarse": coarse["weights"][0]}
        t_fine = None
        if pipeline.fine_field is not None:
            t_fine = pipeline.sampler.fine(ray, t_coarse, coarse["weights"], training)
        if t_fine is not None:
            rgb, sigma = pipeline.query(pipeline.fine_field, ray, t_fine, d_enc)
            fine = pipeline.composite(rgb, sigma, t_fine, ray, background)
            # the fine pass evaluates coarse + importance samples; the importance ones are the values not copied
            importance = t_fine[0][~torch.isin(t_fine[0], t_coarse[0])]
            out.update(t_fine=t_fine[0], weights_fine=fine["weights"][0], t_importance=importance)
        else:
            empty = t_coarse.new_zeros(0)
            out.update(t_fine=empty, weights_fine=empty, t_importance=empty)
    finally:
        pipeline.train(was_training)
    result = {k: v.detach().float().cpu().numpy() for k, v in out.items()}
    result.update(near=float(ray.near[0, 0]), far=float(ray.far[0, 0]))
    return result


def marched_ray_samples(pipeline, ray: RayBundle, background: Tensor | None, training: bool) -> dict:
    """:func:`ray_samples` for a ray-marching sampler: its kept samples and their weights as the "coarse" pass."""
    field = pipeline.coarse_field
    samples = pipeline.sampler.march(ray, pipeline.density_fn(field), training)
    t = samples.t[samples.mask].unsqueeze(0)
    rgb, sigma = pipeline.query(field, ray, t, pipeline.dir_encoder(ray.viewdirs))
    out = pipeline.renderer(rgb, sigma, t, samples.deltas[samples.mask].unsqueeze(0), background)
    empty = np.zeros(0, dtype=np.float32)
    return {"t_coarse": t[0].detach().float().cpu().numpy(), "weights_coarse": out["weights"][0].detach().float()
            .cpu().numpy(), "t_fine": empty, "weights_fine": empty, "t_importance": empty,
            "near": float(ray.near[0, 0]), "far": float(ray.far[0, 0])}


def sdf_ray_samples(pipeline, ray: RayBundle, background: Tensor | None, training: bool) -> dict:
    """:func:`ray_samples` for an SDF pipeline: the uniform samples as "coarse" (no weights of their own), all
    samples and the NeuS weights as "fine", the up-sampled ones as "importance"."""
    clipped = sphere_near_far(ray, pipeline.renderer.radius)
    t = pipeline.sampler.sample(clipped, pipeline.sdf_fn, pipeline.renderer.radius, training)
    t_uniform = stratified_t(clipped.near, clipped.far, pipeline.sampler.n_samples)
    weights = pipeline(ray, background, training=False)["weights"]
    to_np = lambda x: x.detach().float().cpu().numpy()  # noqa: E731
    return {"t_coarse": to_np(t_uniform[0]), "weights_coarse": np.zeros(t_uniform.shape[1], dtype=np.float32),
            "t_fine": to_np(t[0]), "weights_fine": to_np(weights[0]),
            "t_importance": to_np(t[0][~torch.isin(t[0], t_uniform[0])]),
            "near": float(clipped.near[0, 0]), "far": float(clipped.far[0, 0])}


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
