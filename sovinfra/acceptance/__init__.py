"""Fleet acceptance: records, baselines, the run directory and its report."""
