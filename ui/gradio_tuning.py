"""What the load benchmark (bench/load.py) found in Gradio 6.31's queue and sessions.

- The queue runs at most `max_thread_count` events at once over ALL events (40 by default,
  whatever each event's `concurrency_limit` says). Forty generations waiting on the engine then
  held every slot, and any other call (a balance, a gallery page) waited in line for one of them
  to finish: seconds, under load. The limits that matter are per event (`concurrency_limit`;
  QUEUE_CONCURRENCY for the generations) and the thread pool of synchronous handlers
  (`Blocks.max_threads`, left at 40); `enough_queue_slots(queue)` raises the queue's own cap so
  it never binds before those.

- Every API call opens a Gradio session, and `SessionState.__init__` builds the config of every
  block of the UI (about 110 here) up front: 7-10 ms of Python on the loop and ~170 KiB per
  session, for an API call that touches two or three blocks. Those configs are read only for the
  blocks an event updates and for a deep link (`/gradio_api/deep_link`, which we do not offer).
  `lazy_session_configs()` makes `config_values` a mapping that builds a block's config the first
  time it is read, the same value the eager loop would have built (the block objects it reads are
  the session's own, and Gradio replaces an entry whenever it replaces a block).
- Gradio enters `MatplotlibBackendMananger` around every event, which tries `import matplotlib`
  twice. Without matplotlib installed (we do not use it) each try searches sys.path again: a
  failed import is not cached. `no_matplotlib_lookups()` records the absence once.
- After every event the queue rebuilds, in a worker thread, a pandas summary of the last 10,000
  events (`Queue.compute_analytics_summary`) for the `/monitoring` dashboard, which we turn off
  (`enable_monitoring=False`): 7 ms of CPU per event once 10,000 events have been served, so the
  cost of every call grew with the server's age. `no_event_analytics(queue)` keeps the summary
  empty and the per-event records to a handful (Gradio reads them only for that dashboard).

All are installed by `app.create_app`. The session patch replaces a private constructor, so it
applies only to the Gradio minor version it was written against (requirements pin gradio 6.31.*)
and logs a warning and does nothing on another; tests/e2e/test_gradio_tuning.py checks that the
lazy configs equal the eager ones for our real UI.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys

log = logging.getLogger("studio.ui")

PATCHED_GRADIO = "6.31."
ANALYTICS_KEPT = 32  # per-event records the queue keeps (Gradio's default: 10,000)
QUEUE_SLOTS = 1024  # events the queue may run at once, over all events (Gradio's default: 40)


class LazyConfigs(dict):
    """`SessionState.config_values`, built per block on first read."""

    def __init__(self, blocks_config, ids):
        super().__init__()
        self._blocks_config = blocks_config
        self._pending = set(ids)

    def _build(self, key):
        self._pending.discard(key)
        value = self._blocks_config.config_for_block(key, [], self._blocks_config.blocks[key])
        dict.__setitem__(self, key, value)
        return value

    def __missing__(self, key):
        if key in self._pending:
            return self._build(key)
        raise KeyError(key)

    def __contains__(self, key):
        return key in self._pending or dict.__contains__(self, key)

    def __setitem__(self, key, value):
        self._pending.discard(key)
        dict.__setitem__(self, key, value)

    def get(self, key, default=None):
        return self[key] if key in self else default  # noqa: SIM401 - dict.get skips __missing__

    def _all(self) -> None:
        for key in sorted(self._pending):
            self._build(key)

    def __iter__(self):
        self._all()
        return dict.__iter__(self)

    def __len__(self):
        return len(self._pending) + dict.__len__(self)

    def keys(self):
        self._all()
        return dict.keys(self)

    def values(self):
        self._all()
        return dict.values(self)

    def items(self):
        self._all()
        return dict.items(self)


def lazy_session_configs() -> bool:
    """Make Gradio sessions build block configs on demand. Returns whether it was installed."""
    import gradio
    from gradio import state_holder

    if not gradio.__version__.startswith(PATCHED_GRADIO):
        log.warning("gradio %s: lazy session configs not installed (written for %sx)",
                    gradio.__version__, PATCHED_GRADIO)
        return False
    session_state = state_holder.SessionState
    if getattr(session_state, "_studio_lazy", False):
        return True

    def __init__(self, blocks):
        # Gradio 6.31's SessionState.__init__, with config_values lazy.
        self.blocks_config = state_holder.copy(blocks.default_config)
        self.config_values = LazyConfigs(
            self.blocks_config, [k for k in self.blocks_config.blocks if k in blocks.blocks])
        self.state_data = {}
        self._state_ttl = {}
        self.is_closed = False
        self.STATE_TTL_WHEN_CLOSED = 1 if os.getenv("GRADIO_IS_E2E_TEST", None) else 3600

    session_state.__init__ = __init__
    session_state._studio_lazy = True
    return True


def no_matplotlib_lookups() -> None:
    """Record once that matplotlib is absent, so `import matplotlib` fails without a search."""
    if "matplotlib" not in sys.modules and importlib.util.find_spec("matplotlib") is None:
        sys.modules["matplotlib"] = None  # the documented way to make an import fail at once


def no_event_analytics(queue) -> bool:
    """For a queue whose app serves no /monitoring dashboard: no per-event pandas summary, and a
    few per-event records instead of 10,000. Returns whether it was installed."""
    import gradio

    if not gradio.__version__.startswith(PATCHED_GRADIO):
        log.warning("gradio %s: event analytics left on (written for %sx)", gradio.__version__, PATCHED_GRADIO)
        return False
    # Gradio calls it in a worker thread after every event and reads the records only through
    # `.get()` guarded against a missing entry, so older records may go at any time.
    queue.compute_analytics_summary = lambda records: queue.cached_event_analytics_summary
    queue.ANALYTICS_MAX_EVENTS = ANALYTICS_KEPT
    return True


def enough_queue_slots(queue, slots: int = QUEUE_SLOTS) -> None:
    """Let the per-event concurrency limits, not the queue's global cap, decide how many events
    run at once. Before the server starts (the queue sizes its slot list when it starts)."""
    # A slot is an entry in a list the queue scans for a free one; it costs no thread (synchronous
    # handlers still share Gradio's 40 threads) and no connection.
    queue.max_thread_count = max(queue.max_thread_count, slots)
