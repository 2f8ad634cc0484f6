"""The batch a generation belongs to (Compare, Variations): set around the `Studio.generate` calls
of one request, read when the job's row is written, so the flow's signature stays as it is."""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from contextvars import ContextVar

current_batch: ContextVar[str | None] = ContextVar("current_batch", default=None)


@contextmanager
def batch():
    """A new batch id for the generations started inside (tasks created inside inherit it)."""
    batch_id = uuid.uuid4().hex
    token = current_batch.set(batch_id)
    try:
        yield batch_id
    finally:
        current_batch.reset(token)
