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
