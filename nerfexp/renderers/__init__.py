"""Volume renderers: composite field outputs at ray samples into pixels (NeRF density, NeuS SDF)."""
