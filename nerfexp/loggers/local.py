"""Experiment loggers. ``metrics.jsonl`` in the run dir is written whatever the logger; a logger adds a sink."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsFile:
    """Appends one JSON object per ``log`` call to ``<run_dir>/metrics.jsonl`` (flushed, so a crash loses nothing)."""

    def __init__(self, run_dir: Path):
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        self.path = Path(run_dir) / "metrics.jsonl"
        self.fh = open(self.path, "a", encoding="utf-8")

    def log(self, metrics: dict, step: int) -> None:
        self.fh.write(json.dumps({"step": step, **{k: _clean(v) for k, v in metrics.items()}}) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


class NoLogger:
    """The interface every logger has (the W&B and CSV loggers subclass it), as a logger with no sink beyond
    ``metrics.jsonl``."""

    def __init__(self, run_dir: Path | None = None, run_config: dict | None = None, job: dict | None = None,
                 run_id: str | None = None):
        pass

    def log(self, metrics: dict, step: int) -> None:
        pass

    def log_image(self, name: str, image, step: int) -> None:
        pass

    def log_table(self, name: str, columns: list[str], rows: list[list]) -> None:
        pass

    def log_video(self, name: str, path: Path, fps: int) -> None:
        pass

    def log_mesh(self, name: str, path: Path) -> None:
        pass

    def finish(self) -> None:
        pass


class CSVLogger(NoLogger):
    """Writes ``<run_dir>/metrics.csv`` with one row per logged step; columns grow as new keys appear."""

    def __init__(self, run_dir: Path, run_config: dict | None = None, job: dict | None = None,
                 run_id: str | None = None, filename: str = "metrics.csv"):
        self.path = Path(run_dir) / filename
        self.rows: list[dict] = []
        self.columns: list[str] = ["step"]

    def log(self, metrics: dict, step: int) -> None:
        self.rows.append({"step": step, **metrics})
        new = [k for k in metrics if k not in self.columns]
        self.columns.extend(new)
        if new or len(self.rows) == 1:
            self._rewrite()
        else:
            with open(self.path, "a", newline="", encoding="utf-8") as fh:
                csv.DictWriter(fh, self.columns).writerow(self.rows[-1])

    def _rewrite(self) -> None:
        with open(self.path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, self.columns)
            writer.writeheader()
            writer.writerows(self.rows)
