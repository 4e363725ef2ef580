"""The MLflow tracking server as Sluice runs it: MLflow's basic-auth app, credentials from
the environment (or generated on first start), then `mlflow server`. See tracking/serve.py."""
