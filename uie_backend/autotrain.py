"""Optional auto-training: a training run after every N new annotations of a project.

Label Studio sends every annotation event to ``/webhook`` inside the annotator's save, with a 1 s limit, so
the webhook only counts. The job runner counts (in this process, or in Redis for all replicas together);
when a project reaches N, a timer starts the run ``delay`` seconds later; events meanwhile restart the timer,
so a burst of saves becomes one run (and the job runner merges a run requested while another is going into
one follow-up).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)

COUNTED_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED")


class AutoTrainer:
    def __init__(self, every: int, delay_s: float, start_run: Callable[[int, str], None],
                 count: Callable[[int, int], bool]):
        """``count(project_id, every)`` counts one event and says whether it was an ``every``-th."""
        self.every, self.delay_s, self._start_run, self._count = every, delay_s, start_run, count
        self._lock = threading.Lock()
        self._timers: dict[int, threading.Timer] = {}

    def annotation_event(self, project_id: int, label_config: str) -> bool:
        """Count one annotation event; True when it scheduled (or pushed back) a training run."""
        if self.every <= 0:
            return False
        with self._lock:
            # while a run is pending here, events only push it back: the run will include their annotations
            if project_id not in self._timers and not self._count(project_id, self.every):
                return False
            if project_id in self._timers:
                self._timers[project_id].cancel()
            timer = threading.Timer(self.delay_s, self._fire, args=(project_id, label_config))
            timer.daemon = True
            self._timers[project_id] = timer
            timer.start()
        log.info("project %s: auto-training in %.0f s (every %d annotations)", project_id, self.delay_s, self.every)
        return True

    def _fire(self, project_id: int, label_config: str) -> None:
        with self._lock:
            self._timers.pop(project_id, None)
        try:
            self._start_run(project_id, label_config)
        except Exception:  # a timer thread has nobody to report to but the log
            log.exception("project %s: auto-training could not start", project_id)
