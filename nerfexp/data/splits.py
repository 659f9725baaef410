"""Train / validation / test splits of a capture that comes as one list of views (LLFF, DTU).

Test is every ``test_every``-th view, as the papers report; validation is held out of the remaining views, so
hyperparameters chosen on it never see a test view; training takes the rest. The three are disjoint.
"""
from __future__ import annotations

import numpy as np


def holdout_splits(n_views: int, test: np.ndarray, n_val: int, n_val_key: str = "dataset.n_val") -> dict:
    """Split ``n_views`` views given the ``test`` indices: ``n_val`` validation views evenly spaced among the
    others, training the rest.

    Returns:
        ``{"train", "val", "test"}`` -> sorted int index arrays, pairwise disjoint.
    Raises:
        ValueError naming ``n_val_key`` when ``n_val`` is below 1 or leaves no training view.
    """
    rest = np.setdiff1d(np.arange(n_views), test)
    if isinstance(n_val, bool) or not isinstance(n_val, (int, np.integer)) or not 1 <= n_val < len(rest):
        raise ValueError(f"{n_val_key}={n_val!r}: must be an integer from 1 to {len(rest) - 1} (validation views "
                         f"held out of the {len(rest)} non-test views, leaving at least one to train on)")
    # the centres of n_val equal stretches of the non-test views: spread over the capture, never at its ends
    val = rest[((np.arange(n_val) + 0.5) * len(rest) / n_val).astype(int)]
    return {"train": np.setdiff1d(rest, val), "val": np.sort(val), "test": np.sort(np.asarray(test))}
