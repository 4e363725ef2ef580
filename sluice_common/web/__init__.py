"""What both services do over HTTP: app set-up, auth, admission, body framing, metrics."""
