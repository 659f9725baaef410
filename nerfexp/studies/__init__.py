"""Studies across runs: sweep reports, run comparisons, time-budgeted benchmarks."""
