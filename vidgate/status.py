"""Task states and the sets the code branches on."""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    """The life of a task: queued → in_progress → completed | failed (| cancelled)."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE = frozenset({TaskStatus.QUEUED, TaskStatus.IN_PROGRESS})
TERMINAL = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})
