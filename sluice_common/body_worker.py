"""gunicorn's threaded worker with request bodies read by its event loop (placeholder)."""

from __future__ import annotations

from gunicorn.workers.gthread import ThreadWorker


class BodyBufferingWorker(ThreadWorker):
    """Placeholder: gthread unchanged."""
