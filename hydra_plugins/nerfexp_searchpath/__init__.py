"""Hydra plugin that puts the repository root on nerfexp's config search path (``+sweeps=<name>``)."""
