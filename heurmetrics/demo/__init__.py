"""The demo workload behind ``heurmetrics demo`` (and ``make demo``)."""
