"""A job's test pictures, read from its run dir: the classifier's confusion matrix and worst test images.

The report imports no task code, so the file names the classification task writes
(`tasks/pictures.py`) are spelled here again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lightsuite.reporting.runs import Job

# file in the run dir -> what the page calls it
PICTURE_FILES = {
    "confusion_matrix.png": "confusion matrix of the test set",
    "worst_test_images.png": "test images with the lowest probability of their true class",
}
# a sweep of hundreds of jobs would make a page of hundreds of megabytes; the best job comes first
MAX_JOBS = 12
PNG = b"\x89PNG\r\n\x1a\n"


@dataclass
class JobPictures:
    """The pictures one job left: (file name, caption, PNG bytes) each."""

    job: Job
    pictures: list[tuple[str, str, bytes]]


def job_pictures(jobs: Sequence[Job], best: Job | None, notes: list[str]) -> list[JobPictures]:
    """The pictures of the jobs whose run dirs hold them, best job first, at most `MAX_JOBS` jobs."""
    ordered = [best, *(job for job in jobs if job is not best)] if best is not None else list(jobs)
    found = []
    for job in ordered:
        pictures = []
        for name, caption in PICTURE_FILES.items():
            data = _png(job.path / name)
            if data is not None:
                pictures.append((name, caption, data))
        if pictures:
            found.append(JobPictures(job, pictures))
    if len(found) > MAX_JOBS:
        left = len(found) - MAX_JOBS
        notes.append(f"test pictures of {left} more job(s) not shown (at most {MAX_JOBS}): in their run dirs")
        found = found[:MAX_JOBS]
    return found


def _png(path: Path) -> bytes | None:
    """The file's bytes if it is a readable PNG (a half-copied run dir may hold anything), else None."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if data.startswith(PNG) else None
