"""The sampling plot: coarse vs fine samples along one ray, and the fine samples gathering where the weights are."""
from __future__ import annotations

import imageio.v3 as iio
import torch
from torch import nn

from nerfexp.cameras import RayBundle
from nerfexp.encoders.frequency import FrequencyEncoder
from nerfexp.pipelines.nerf import NeRFPipeline
from nerfexp.renderers.volume import VolumeRenderer
from nerfexp.samplers.hierarchical import HierarchicalSampler
from nerfexp.viz.plots import plot_ray_samples, ray_samples


class BallField(nn.Module):
    """Opaque ball of radius 0.5 at the origin (sigma 40 inside, 0 outside), grey everywhere."""

    def forward(self, x_enc, d_enc, density_noise_std=0.0):
        sigma = 40.0 * (x_enc[..., :3].norm(dim=-1) < 0.5).float()
        return torch.full((*sigma.shape, 3), 0.5), sigma


def ball_pipeline(n_samples: int = 32, n_importance: int = 64) -> NeRFPipeline:
    identity = FrequencyEncoder(n_freqs=0, include_input=True)
    return NeRFPipeline(identity, identity, BallField(), BallField(), HierarchicalSampler(n_samples, n_importance),
                        VolumeRenderer())


def ray_at_ball() -> RayBundle:
    """From z=4 towards the origin: enters the ball at t=3.5, in a [2, 6] near/far range."""
    d = torch.tensor([[0.0, 0.0, -1.0]])
    return RayBundle(torch.tensor([[0.0, 0.0, 4.0]]), d, d, torch.full((1, 1), 2.0), torch.full((1, 1), 6.0))


def test_fine_samples_concentrate_where_the_coarse_weights_are():
    s = ray_samples(ball_pipeline(), ray_at_ball())
    assert len(s["t_coarse"]) == 32 and len(s["t_importance"]) == 64 and len(s["t_fine"]) == 96
    peak = s["t_coarse"][s["weights_coarse"].argmax()]
    assert 3.4 <= peak <= 3.7  # the coarse pass found the surface
    near_peak = lambda t: (abs(t - 3.5) < 0.25).mean()
    # half a unit of a four-unit ray holds an eighth of the stratified samples but most of the importance ones
    assert near_peak(s["t_coarse"]) < 0.15
    assert near_peak(s["t_importance"]) > 0.8
    assert s["weights_fine"].sum() > 0.99


def test_plot_ray_samples_writes_a_png(tmp_path):
    path = plot_ray_samples(ball_pipeline(), ray_at_ball(), tmp_path / "plots" / "ray.png", title="ball")
    image = iio.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400
    assert image[..., :3].std() > 10  # not a blank canvas


def test_plot_without_a_fine_pass_shows_only_coarse_samples(tmp_path):
    s = ray_samples(ball_pipeline(n_importance=0), ray_at_ball())
    assert len(s["t_importance"]) == 0  # the hierarchical sampler with n_importance=0 has no fine pass
    assert plot_ray_samples(ball_pipeline(n_importance=0), ray_at_ball(), tmp_path / "ray.png").is_file()
