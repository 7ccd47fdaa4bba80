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
    """Writes one JSON object per line to ``log.jsonl`` and reports progress (rank 0 only).

    The file is opened at the first record, so a run failing before its first step leaves none.
    Progress: a rich bar when stderr is a terminal and ``progress`` is on; otherwise (a log file, a
    LOCO worker) one line every ``every_s`` seconds (0: none) and at the last step: step, loss,
    tokens/s, ETA.
    """

    def __init__(self, path: Path | None, total: int, start: int, progress: bool, every_s: float = 30.0) -> None:
        self.path, self.fh, self.total, self.start = path, None, total, start
        self.progress = None
        tty = sys.stderr.isatty()
        self.lines = path is not None and every_s > 0 and not tty
        self.every_s, self.t0 = every_s, time.monotonic()
        self.last_line = self.t0
        if path is not None and progress and tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), TextColumn("{task.fields[info]}"), transient=False)
            self.task = self.progress.add_task("train", total=total, completed=start, info="")
            self.progress.start()

    def write(self, record: dict[str, Any]) -> None:
        """Append a record and report its headline numbers."""
        if self.path is None:
            return
        if self.fh is None:
            self.fh = self.path.open("a", encoding="utf-8")
        self.fh.write(json.dumps(record, sort_keys=True) + "\n")
        self.fh.flush()
        if "step" not in record or "loss" not in record:
            return
        if self.progress is not None:
            info = f"loss {record['loss']:.4f}  {record.get('tokens_per_s') or 0:,.0f} tok/s"
            if record.get("mfu") is not None:
                info += f"  MFU {100 * record['mfu']:.1f}%"
            self.progress.update(self.task, completed=record["step"], info=info)
        elif self.lines:
            now = time.monotonic()
            if now - self.last_line >= self.every_s or record["step"] == self.total:
                self.last_line = now
                print(progress_line(record, self.total, self.start, now - self.t0), file=sys.stderr, flush=True)

    def close(self) -> None:
        """Stop the bar and close the file."""
        if self.progress is not None:
            self.progress.stop()
        if self.fh is not None:
            self.fh.close()


def progress_line(record: dict[str, Any], total: int, start: int, elapsed: float) -> str:
    """``train step 12/100  loss 2.3456  1,234 tok/s  ETA 3m20s`` (ETA from this process's pace)."""
    step = record["step"]
    done = step - start
    eta = elapsed / done * (total - step) if done > 0 else float("nan")
    return (f"train step {step}/{total}  loss {record['loss']:.4f}  {record.get('tokens_per_s') or 0:,.0f} tok/s"
            f"  ETA {_duration(eta)}")


def _duration(seconds: float) -> str:
    if seconds != seconds:  # NaN
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
