"""Start `mlflow server` behind MLflow's basic-auth app.

    python -m tracking.serve [mlflow server options...]

Whoever reaches an unauthenticated MLflow can register versions and move aliases, so the
server always requires a user name and password (only /health is open). Settings:

- MLFLOW_TRACKING_USERNAME (default "sluice") and MLFLOW_TRACKING_PASSWORD: the account the
  trainer uses, an MLflow admin. Without a password, one is generated on first start into
  MLFLOW_TRACKING_PASSWORD_FILE (mode 0600) and read from there by the trainer.
- The configured password is the password: each start sets it on the account, so changing
  the setting and restarting rotates it (MLflow itself only reads it when the user is new).
- SLUICE_MLFLOW_STATE (default: the current directory): where the auth settings, the user
  store (mlflow-auth.db, unless MLFLOW_AUTH_DATABASE_URI names another) and the session
  signing key live.
- The stores (tracking/stores.py): MLFLOW_BACKEND_STORE_URI, else the SLUICE_DB_* database,
  else SQLite at $SLUICE_MLFLOW_STATE/mlflow.db; MLFLOW_ARTIFACTS_DESTINATION, else
  $SLUICE_MLFLOW_STATE/artifacts. Before MLflow starts, an older database is upgraded to this
  MLflow's schema and an s3:// destination must answer.
"""

from __future__ import annotations

import os
import sys

from sluice_common.web.internal import ensure_secret_file
from tracking import stores

DEFAULT_USERNAME = "sluice"
MIN_PASSWORD_CHARS = 12  # MLflow's own rule for basic-auth passwords


class ConfigError(Exception):
    """A setting the server cannot start with; the message says which one to fix."""


def credentials(env: dict) -> tuple[str, str]:
    """The configured user name and password, the password generated into its file when
    neither MLFLOW_TRACKING_PASSWORD nor an existing file gives one."""
    username = env.get("MLFLOW_TRACKING_USERNAME") or DEFAULT_USERNAME
    password = env.get("MLFLOW_TRACKING_PASSWORD")
    if not password:
        path = env.get("MLFLOW_TRACKING_PASSWORD_FILE")
        if not path:
            raise ConfigError("set MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_PASSWORD_FILE")
        password = ensure_secret_file(path)
    if len(password) < MIN_PASSWORD_CHARS:
        raise ConfigError(
            f"MLFLOW_TRACKING_PASSWORD must have at least {MIN_PASSWORD_CHARS} characters"
        )
    for name, value in (
        ("MLFLOW_TRACKING_USERNAME", username),
        ("MLFLOW_TRACKING_PASSWORD", password),
    ):
        # MLflow's artifact routes read basic-auth credentials as ASCII (its other routes as
        # UTF-8): anything else signs in but fails every model upload.
        if not (value.isascii() and value.isprintable()):
            raise ConfigError(f"{name} must be printable ASCII (letters, digits, punctuation)")
    if ":" in username:
        raise ConfigError("MLFLOW_TRACKING_USERNAME cannot contain ':' (basic auth splits on it)")
    return username, password


def auth_settings(database_uri: str, username: str) -> str:
    """MLflow's basic-auth configuration (an ini file's text)."""
    # configparser interpolates %: a URL-encoded database password or a path with % in it
    # must reach MLflow as written.
    database_uri, username = database_uri.replace("%", "%%"), username.replace("%", "%%")
    return (
        "[mlflow]\n"
        # Only the admin account exists; any other user must be granted access explicitly.
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = {database_uri}\n"
        f"admin_username = {username}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # A password check is a PBKDF2 hash (~0.1 s of CPU); the trainer makes dozens of calls
        # per run. A changed password is picked up at the next start, when this cache is new.
        "auth_cache_ttl_seconds = 300\n"
    )


def set_admin(database_uri: str, username: str, password: str) -> None:
    """Create the admin account, or set its password to the configured one."""
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore()
    store.init_db(database_uri)
    if store.has_user(username, use_primary=True):
        if not store.authenticate_user(username, password, use_primary=True):
            store.update_user(username, password=password, is_admin=True)
            print(f"tracking: set the configured password on MLflow user {username!r}")
    else:
        store.create_user(username, password, is_admin=True)
        print(f"tracking: created MLflow user {username!r}")
    others = [
        user.username for user in store.list_users() if user.is_admin and user.username != username
    ]
    if others:  # e.g. the account's earlier name: it keeps working until an admin removes it
        print(
            f"tracking: WARNING: other MLflow admin accounts exist: {', '.join(others)}; "
            "delete those you no longer use (MLflow's users/delete API)"
        )


def main(argv: list[str]) -> None:
    # Every file of MLflow is for this account only: the runs database, the artifacts, the user
    # store (password hashes) and the keys.
    os.umask(0o077)
    env = stores.resolved_env(os.environ)
    state = os.path.abspath(env.get("SLUICE_MLFLOW_STATE") or ".")
    os.makedirs(state, exist_ok=True)
    try:
        username, password = credentials(env)
    except ConfigError as err:
        sys.exit(f"tracking: {err}")
    database_uri = env.get("MLFLOW_AUTH_DATABASE_URI") or (
        f"sqlite:///{os.path.join(state, 'mlflow-auth.db')}"
    )
    try:
        backend = stores.backend_store_uri(env, state)
        destination = stores.artifacts_destination(env, state)
        stores.prepare_backend(backend, state, env)
        stores.check_destination(destination, env)
        stores.guard_destination(backend, destination, state, env)
    except stores.StoreError as err:
        sys.exit(f"tracking: {err}")
    config_path = os.path.join(state, "mlflow-auth.ini")
    with open(config_path, "w", encoding="utf-8") as handle:
        handle.write(auth_settings(database_uri, username))
    env.update(
        # mlflow server reads these when --backend-store-uri / --artifacts-destination are not
        # given, which keeps the database password out of the process list.
        MLFLOW_BACKEND_STORE_URI=backend,
        MLFLOW_ARTIFACTS_DESTINATION=destination,
        MLFLOW_AUTH_CONFIG_PATH=config_path,
        MLFLOW_AUTH_ADMIN_USERNAME=username,
        MLFLOW_AUTH_ADMIN_PASSWORD=password,
        MLFLOW_FLASK_SERVER_SECRET_KEY=env.get("MLFLOW_FLASK_SERVER_SECRET_KEY")
        or ensure_secret_file(os.path.join(state, "mlflow-flask.key")),
    )
    # MLflow's own command, run in this process: an exec of `mlflow server` would import
    # MLflow a second time (~3.5 s of CPU at every start) before it spawns its server. The
    # environment is MLflow's before set_admin: its auth module reads the config on import.
    os.environ.clear()
    os.environ.update(env)
    set_admin(database_uri, username, password)
    from mlflow.cli import cli  # heavy (~3 s): tests import this module for its checks alone

    sys.exit(cli.main(args=["server", "--app-name", "basic-auth", *argv], prog_name="mlflow"))


if __name__ == "__main__":
    main(sys.argv[1:])
