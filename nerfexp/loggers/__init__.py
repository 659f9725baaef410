"""Run loggers: metrics.jsonl always, plus CSV or Weights & Biases (with a reader for offline W&B runs)."""
