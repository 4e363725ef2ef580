"""Pure functions of a table: column kinds, rows, target, booster, metrics (no Flask, no MLflow)."""
