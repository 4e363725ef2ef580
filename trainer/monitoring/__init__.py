"""Production monitoring: reference profiles, per-batch counts, drift, feedback and reports."""
