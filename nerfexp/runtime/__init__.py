"""The process a run lives in: device and seeds, the allocator setting, provenance of code and machine."""
