"""Frequency (positional) encoding values and layout."""
import math

import torch

from nerfexp.encoders.frequency import FrequencyEncoder


def test_frequency_encoding_values():
    enc = FrequencyEncoder(n_freqs=3, include_input=True)
    x = torch.tensor([[0.3, -1.2, 2.0]])
    out = enc(x)
    assert out.shape == (1, enc.out_dim) and enc.out_dim == 3 * (1 + 2 * 3)
    expected = [0.3, -1.2, 2.0]
    for k in range(3):
        f = 2.0 ** k
        expected += [math.sin(f * v) for v in (0.3, -1.2, 2.0)] + [math.cos(f * v) for v in (0.3, -1.2, 2.0)]
    assert torch.allclose(out[0], torch.tensor(expected), atol=1e-5)


def test_linear_bands_and_no_input():
    enc = FrequencyEncoder(n_freqs=4, max_freq_log2=3, log_sampling=False, include_input=False, in_dim=1)
    x = torch.tensor([[0.25]])
    out = enc(x)[0]
    bands = torch.linspace(1.0, 8.0, 4)
    assert torch.allclose(out[0::2], torch.sin(bands * 0.25), atol=1e-6)
    assert torch.allclose(out[1::2], torch.cos(bands * 0.25), atol=1e-6)


def test_integrated_encoding_is_the_expectation_over_the_footprint():
    """With a footprint ``s``, each band is the mean of the plain encoding over points jittered by N(0, s^2)."""
    plain, integrated = FrequencyEncoder(n_freqs=6), FrequencyEncoder(n_freqs=6, integrated=True)
    x = torch.tensor([[0.3, -1.2, 2.0], [1.1, 0.4, -0.7]])
    s = torch.tensor([[0.05], [0.2]])
    gen = torch.Generator().manual_seed(0)
    jitter = torch.randn(100_000, 2, 3, generator=gen) * s
    mc = plain(x + jitter).mean(0)
    out = integrated(x, s)
    assert (out - mc).abs().max() < 0.01
    # the input passes unchanged; bands much finer than the footprint fade, coarse ones stay
    assert torch.equal(out[:, :3], x)
    top = out[1, 3 + 2 * 3 * 5:]  # the last band (f = 32, f s = 6.4) of the wide footprint
    assert top.abs().max() < 1e-6 < plain(x)[1, 3 + 2 * 3 * 5:].abs().max()
    assert (out[0, 3:9] - plain(x)[0, 3:9]).abs().max() < 0.01  # f = 1, s = 0.05: almost the plain band
    # no footprint, or not integrated: the plain encoding
    assert torch.equal(integrated(x), plain(x)) and torch.equal(plain(x, s), plain(x))
