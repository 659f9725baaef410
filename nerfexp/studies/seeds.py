"""Seed statistics of a sweep: jobs that differ only in ``seed`` are one configuration, summarised by mean,
standard deviation and a Student-t 95% interval, and compared with the best configuration seed by seed.

A study that compares configurations on one seed each cannot tell a real difference from noise; these numbers can.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

SEED_KEY = "seed"


def t_halfwidth(values: Sequence[float], confidence: float = 0.95) -> float | None:
    """Half-width of the Student-t ``confidence`` interval of the mean of ``values`` (None below 2 values)."""
    from scipy.stats import t

    n = len(values)
    if n < 2:
        return None
    return float(t.ppf(0.5 + confidence / 2, n - 1)) * statistics.stdev(values) / math.sqrt(n)


def describe(values: Sequence[float]) -> dict[str, float | None]:
    """``mean``, ``std`` (sample, n-1) and ``ci95`` (Student-t half-width) of ``values``; None where undefined."""
    values = [float(v) for v in values]
    return {"mean": statistics.fmean(values) if values else None,
            "std": statistics.stdev(values) if len(values) > 1 else None,
            "ci95": t_halfwidth(values)}


def config_key(params: dict[str, str], swept: Sequence[str]) -> tuple[tuple[str, str | None], ...]:
    """What identifies a configuration: the swept keys' values, ``seed`` left out."""
    return tuple((k, params.get(k)) for k in swept if k != SEED_KEY)


def group_by_config(rows: list[dict], params: list[dict[str, str]], swept: Sequence[str]) \
        -> dict[tuple, list[tuple[str | None, dict]]]:
    """Rows grouped by configuration (first-seen order), each as ``(seed, row)`` pairs."""
    groups: dict[tuple, list[tuple[str | None, dict]]] = {}
    for row, p in zip(rows, params):
        groups.setdefault(config_key(p, swept), []).append((p.get(SEED_KEY), row))
    return groups


def paired_difference(config: dict[str | None, float], best: dict[str | None, float]) -> dict:
    """Mean of ``config - best`` over the seeds both have, its 95% interval, and whether it excludes 0."""
    seeds = [s for s in config if s in best]
    diffs = [config[s] - best[s] for s in seeds]
    d = describe(diffs)
    low = high = None
    if d["ci95"] is not None:
        low, high = d["mean"] - d["ci95"], d["mean"] + d["ci95"]
    return {"paired_seeds": len(seeds), "diff_vs_best_mean": d["mean"], "diff_vs_best_ci95_low": low,
            "diff_vs_best_ci95_high": high,
            "differs_from_best": None if low is None else bool(high < 0 or low > 0)}


def by_config(rows: list[dict], params: list[dict[str, str]], swept: Sequence[str],
              levels: Sequence[float], metric: str = "final_val_psnr") -> list[dict]:
    """One row per configuration: the swept keys (seed excluded), ``n_seeds``, mean/std/ci95 of the validation
    PSNR, of the train-val gap and of the seconds to each PSNR level (over the seeds that reached it, counted in
    ``..._reached``), and the paired comparison with the configuration of the best mean ``metric``."""
    groups = group_by_config(rows, params, swept)
    out = []
    for key, members in groups.items():
        row: dict = dict(key)
        row["n_seeds"] = len(members)
        row["seeds"] = " ".join(str(s) for s, _ in members)

        def stats(name: str, value: Callable[[dict], float | None], count: bool = True) -> None:
            vals = [v for v in (value(r) for _, r in members) if v is not None]
            for stat, x in describe(vals).items():
                row[f"{name}_{stat}"] = x
            if count and len(vals) < len(members):  # e.g. a job that never validated
                row[f"{name}_n"] = len(vals)

        stats("val_psnr", lambda r: r[metric])
        stats("train_val_gap", lambda r: r["train_val_gap"])
        for level in levels:
            col = f"seconds_to_{level:g}dB"
            stats(col, lambda r, c=col: r.get(c), count=False)
            row[f"{col}_reached"] = f"{sum(r.get(col) is not None for _, r in members)}/{len(members)}"
        stats("test_psnr", lambda r: r.get("test_psnr"))
        out.append(row)
    means = [(r["val_psnr_mean"], n) for n, r in enumerate(out) if r["val_psnr_mean"] is not None]
    if means:
        best_n = max(means)[1]
        best_key = list(groups)[best_n]
        best = {s: r[metric] for s, r in groups[best_key] if r[metric] is not None}
        for n, (key, members) in enumerate(groups.items()):
            mine = {s: r[metric] for s, r in members if r[metric] is not None}
            out[n]["best"] = n == best_n
            out[n].update(paired_difference(mine, best))
    # the same columns on every row (a configuration missing a level or a comparison has blanks)
    columns: list[str] = []
    for r in out:
        columns += [c for c in r if c not in columns]
    return [{c: r.get(c) for c in columns} for r in out]
