"""Pipelines: rays -> sampler -> encoders + field -> renderer, per pass; chunked rendering of whole views."""
