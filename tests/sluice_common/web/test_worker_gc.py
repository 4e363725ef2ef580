"""gunicorn_conf.post_worker_init: a worker's loaded app goes to the collector's permanent
generation, and later garbage is still collected."""

from __future__ import annotations

import gc
import weakref
from types import SimpleNamespace

from sluice_common.web import gunicorn_conf


class _Node:
    pass


def test_post_worker_init_freezes_what_the_worker_holds_and_later_cycles_are_still_freed():
    held = [{"cell": str(i)} for i in range(1000)]  # what a loaded app holds
    try:
        gunicorn_conf.post_worker_init(SimpleNamespace())
        assert gc.get_freeze_count() >= len(held)
        node = _Node()
        node.me = node  # a cycle made by a request after the freeze
        gone = weakref.ref(node)
        del node
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()  # the test process goes on collecting as before
