"""Recovery after a crash: settle the generations a dead process left "pending", and tell the
stale-hold sweep (services/maintenance.py) whether a job's image was stored, so it captures
the hold only then."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlmodel import select

from models.generation import Generation
from services.db import Database


class StudioRecovery:
    """Studio's recovery methods (Studio inherits them)."""

    db: Database
    ledger: object
    clock: Callable[[], datetime]

    def settle_abandoned(self) -> int:
        """Generations left "pending" by a process that died: once the sweep has settled their
        hold (their process is gone, or the hold expired), mark them succeeded (captured: the
        image was stored) or failed (not charged; the orphan-file sweep removes any files)."""
        with self.db.session() as s:
            pending = s.exec(select(Generation.id).where(Generation.status == "pending")).all()
        settled = 0
        for gen_id in pending:
            hold = self.ledger.get_hold(gen_id)
            if hold is not None and hold.status == "pending":
                continue  # the sweep has not reached it yet
            with self.db.transaction() as s:
                generation = s.get(Generation, gen_id)
                if generation is None or generation.status != "pending":
                    continue
                if hold is not None and hold.status == "captured":
                    generation.status = "succeeded"
                else:
                    generation.status = "failed"
                    generation.error = "The app stopped before the image was ready. You were not charged."
                generation.finished_at = self.clock()
                s.add(generation)
                settled += 1
        return settled

    def is_stored(self, job_id: str) -> bool:
        """For the sweep: was this job's image stored (marked with its key)?"""
        with self.db.session() as s:
            key = s.exec(select(Generation.image_key).where(Generation.id == job_id)).first()
        return key is not None

