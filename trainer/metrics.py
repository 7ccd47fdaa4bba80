"""Step metrics (loss, tokens/s, MFU, peak memory): JSONL log file and a rich progress bar."""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any


def peak_memory_gb(device: Any) -> float:
    """Peak allocated accelerator memory (CUDA) or peak resident set size (CPU), in GB."""
    if device.type == "cuda":
        import torch

        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


class StepClock:
    """Step durations read off the device's own timeline, so timing never stalls the queue.

    A mark is a CUDA event recorded on the current stream (or ``perf_counter`` on the CPU, where
    work is synchronous). The seconds between two marks are the device time between them, idle
    gaps included, so a step that left the GPU waiting is charged for the wait; only reading a
    duration waits, and only for the later mark.
    """

    def __init__(self, device: Any) -> None:
        self.cuda = device.type == "cuda"

    def mark(self) -> Any:
        """A point on the device timeline after all work queued so far."""
        if self.cuda:
            import torch

            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def seconds(self, start: Any, end: Any) -> float:
        """Seconds from ``start`` to ``end`` (waits until the device reaches ``end``)."""
        if self.cuda:
            end.synchronize()
            return start.elapsed_time(end) / 1000.0
        return end - start


class RunLog:
    """Writes one JSON object per line to ``log.jsonl`` and drives the progress bar (rank 0 only)."""

    def __init__(self, path: Path | None, total: int, start: int, progress: bool) -> None:
        self.fh = path.open("a", encoding="utf-8") if path else None
        self.progress = None
        if path is not None and progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                     transient=False, disable=not sys.stderr.isatty())
            self.task = self.progress.add_task("train", total=total, completed=start, info="")
            self.progress.start()

    def write(self, record: dict[str, Any]) -> None:
        """Append a record and update the bar with its headline numbers."""
        if self.fh is None:
            return
        self.fh.write(json.dumps(record, sort_keys=True) + "\n")
        self.fh.flush()
        if self.progress is not None and "step" in record and "loss" in record:
            info = f"loss {record['loss']:.4f}  {record.get('tokens_per_s', 0):,.0f} tok/s"
            if record.get("mfu") is not None:
                info += f"  MFU {100 * record['mfu']:.1f}%"
            self.progress.update(self.task, completed=record["step"], info=info)

    def close(self) -> None:
        """Stop the bar and close the file."""
        if self.progress is not None:
            self.progress.stop()
        if self.fh is not None:
            self.fh.close()
