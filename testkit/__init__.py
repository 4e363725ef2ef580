"""What tests/ and bench/ share (neither imports the other): throwaway servers on loopback (the
local stack, PostgreSQL, S3, a headless browser) and measuring helpers (process memory, model
quality against plain XGBoost)."""
