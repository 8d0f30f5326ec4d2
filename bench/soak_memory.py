"""Resident memory of the soak's processes over time, read from /proc: one series per process
and incarnation (a restarted one starts a new series), its slope after warm-up, each process's
highest RSS per stretch of the run across its restarts, a CSV, a plot.

    python -m bench.soak_memory <work dir>/memory.csv [--warmup-minutes 10] [--window-minutes 30]

prints the summary again from a finished run's CSV.
"""

from __future__ import annotations

import argparse
import csv
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.soak_network import Managed

# A slope over less than this after warm-up is noise, not growth: RSS moves in steps (a malloc
# arena or a cache filling), and one 1 MB step reads as 6 MB/h over 10 minutes, 4 MB/h over 15.
MIN_SLOPE_SPAN_S = 15 * 60.0
MIN_SLOPE_SAMPLES = 10


@dataclass(frozen=True)
class Sample:
    at_s: float  # since the soak's load started
    process: str
    incarnation: int
    pid: int
    rss_mb: float

    @property
    def series(self) -> str:
        return f"{self.process}#{self.incarnation}"


def rss_mb(pid: int) -> float | None:
    """VmRSS of `pid` in MB (10^6 bytes), None when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    return None


class MemorySampler:
    """Samples every process every `every_s` seconds in a thread of its own."""

    def __init__(
        self, processes: Callable[[], Sequence[Managed]], every_s: float, origin: float
    ) -> None:
        self.samples: list[Sample] = []
        self._processes = processes
        self._every_s = every_s
        self._origin = origin
        self._quit = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-memory", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._quit.set()
        self._thread.join()

    def sample_once(self) -> None:
        at = time.monotonic() - self._origin
        for process in self._processes():
            pid = process.pid
            found = None if pid is None else rss_mb(pid)
            if pid is not None and found is not None:
                self.samples.append(Sample(at, process.name, process.incarnation, pid, found))

    def _run(self) -> None:
        while not self._quit.is_set():
            self.sample_once()
            self._quit.wait(self._every_s)


def least_squares_slope(points: Sequence[tuple[float, float]]) -> float:
    """The slope of the least-squares line through (x, y) points; 0 for fewer than two x."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


@dataclass(frozen=True)
class SeriesSummary:
    series: str
    process: str
    samples: int
    first_s: float
    last_s: float
    first_mb: float
    max_mb: float
    last_mb: float
    slope_mb_per_h: float | None  # after warm-up; None when too little of it is left

    @property
    def is_node(self) -> bool:
        return self.process.startswith("node-")


def summarize(samples: Sequence[Sample], warmup_s: float) -> list[SeriesSummary]:
    """Per series; its warm-up counts from its own first sample (a restarted process warms up
    again)."""
    grouped: dict[str, list[Sample]] = {}
    for sample in samples:
        grouped.setdefault(sample.series, []).append(sample)
    summaries = []
    for series, points in grouped.items():
        start = points[0].at_s
        settled = [(p.at_s / 3600, p.rss_mb) for p in points if p.at_s - start >= warmup_s]
        span = (settled[-1][0] - settled[0][0]) * 3600 if settled else 0.0
        enough = len(settled) >= MIN_SLOPE_SAMPLES and span >= MIN_SLOPE_SPAN_S
        summaries.append(
            SeriesSummary(
                series=series,
                process=points[0].process,
                samples=len(points),
                first_s=start,
                last_s=points[-1].at_s,
                first_mb=points[0].rss_mb,
                max_mb=max(p.rss_mb for p in points),
                last_mb=points[-1].rss_mb,
                slope_mb_per_h=least_squares_slope(settled) if enough else None,
            )
        )
    return sorted(summaries, key=lambda s: (s.process, s.first_s))


def window_maxima(
    samples: Sequence[Sample], warmup_s: float, window_s: float
) -> dict[str, list[float | None]]:
    """Each process's highest RSS in each `window_s` stretch of the run, whichever of its lives
    it was in, leaving out each life's warm-up: a process whose lives keep climbing shows it here
    even when every life is too short for a slope. None for a stretch with no settled sample."""
    starts: dict[str, float] = {}
    for sample in samples:
        starts.setdefault(sample.series, sample.at_s)
    end = max((s.at_s for s in samples), default=0.0)
    count = max(1, math.ceil(end / window_s))  # a sample right at the end is in the last one
    maxima: dict[str, list[float | None]] = {}
    for sample in samples:
        row = maxima.setdefault(sample.process, [None] * count)
        if sample.at_s - starts[sample.series] < warmup_s:
            continue
        index = min(int(sample.at_s // window_s), count - 1)
        current = row[index]
        row[index] = sample.rss_mb if current is None else max(current, sample.rss_mb)
    return dict(sorted(maxima.items()))


def describe_memory(samples: Sequence[Sample], warmup_s: float, window_s: float) -> list[str]:
    """The printed summary: a line per series, then the maxima per stretch of the run."""
    lines = [f"resident memory (MB; slope least-squares after {warmup_s / 60:g} min of each life)"]
    lines.append(
        f"  {'process':22} {'from s':>7} {'to s':>7} {'first':>7} {'max':>7} {'last':>7}  slope"
    )
    summaries = summarize(samples, warmup_s)
    for s in summaries:
        slope = "n/a" if s.slope_mb_per_h is None else f"{s.slope_mb_per_h:+.2f} MB/h"
        lines.append(
            f"  {s.series:22} {s.first_s:7.0f} {s.last_s:7.0f} {s.first_mb:7.1f} "
            f"{s.max_mb:7.1f} {s.last_mb:7.1f}  {slope}"
        )
    nodes = [s.max_mb for s in summaries if s.is_node]
    if nodes:
        lines.append(f"  node max RSS {max(nodes):.1f} MB")
    maxima = window_maxima(samples, warmup_s, window_s)
    if maxima:
        minutes = window_s / 60
        count = len(next(iter(maxima.values())))
        heads = " ".join(f"{f'{i * minutes:g}-{(i + 1) * minutes:g}':>8}" for i in range(count))
        lines.append(f"  highest RSS per {minutes:g} minutes of the run, after each warm-up:")
        lines.append(f"  {'process':22} {heads}")
        for process, row in maxima.items():
            cells = " ".join(f"{'-' if mb is None else f'{mb:.1f}':>8}" for mb in row)
            lines.append(f"  {process:22} {cells}")
    return lines


def write_csv(samples: Sequence[Sample], path: Path) -> None:
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["elapsed_s", "process", "incarnation", "pid", "rss_mb"])
        for s in samples:
            out.writerow([f"{s.at_s:.1f}", s.process, s.incarnation, s.pid, f"{s.rss_mb:.2f}"])


def read_csv(path: Path) -> list[Sample]:
    with path.open(newline="") as handle:
        return [
            Sample(
                float(row["elapsed_s"]),
                row["process"],
                int(row["incarnation"]),
                int(row["pid"]),
                float(row["rss_mb"]),
            )
            for row in csv.DictReader(handle)
        ]


def plot_svg(
    samples: Sequence[Sample],
    path: Path,
    warmup_s: float,
    title: str,
    chaos: Sequence[tuple[float, str]] = (),
) -> bool:
    """Resident memory against time, a line per series (one colour per process), the chaos
    events (seconds, "kill" or "stop") as faint vertical lines; False when matplotlib is not
    installed (`pip install -e '.[soak]'`)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    processes = sorted({s.process for s in samples})
    colours = {name: f"C{index % 10}" for index, name in enumerate(processes)}
    figure, axes = plt.subplots(figsize=(11, 5.5))
    labelled: set[str] = set()
    grouped: dict[str, list[Sample]] = {}
    for sample in samples:
        grouped.setdefault(sample.series, []).append(sample)
    for points in grouped.values():
        name = points[0].process
        axes.plot(
            [p.at_s / 60 for p in points],
            [p.rss_mb for p in points],
            color=colours[name],
            linewidth=1.2,
            label=None if name in labelled else name,
        )
        labelled.add(name)
    axes.axvline(warmup_s / 60, color="grey", linestyle=":", linewidth=1, label="warm-up ends")
    for at_s, action in chaos:
        style = {"kill": "tab:red", "stop": "tab:orange"}.get(action, "grey")
        label = None if action in labelled else f"{action} (chaos)"
        labelled.add(action)
        axes.axvline(at_s / 60, color=style, alpha=0.35, linewidth=0.8, label=label)
    axes.set_xlabel("minutes since the load started")
    axes.set_ylabel("resident memory (MB)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, format="svg")
    plt.close(figure)
    return True


def positive_minutes(text: str) -> float:
    """An argparse type: a stretch of the run must be longer than nothing."""
    try:
        minutes = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of minutes: {text!r}") from None
    if not minutes > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 minutes: {text!r}")
    return minutes


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The memory summary of a finished soak.")
    parser.add_argument("csv", type=Path, help="the run's memory.csv")
    parser.add_argument("--warmup-minutes", type=float, default=10.0)
    parser.add_argument("--window-minutes", type=positive_minutes, default=30.0)
    args = parser.parse_args(argv)
    samples = read_csv(args.csv)
    for line in describe_memory(samples, args.warmup_minutes * 60, args.window_minutes * 60):
        print(line)


if __name__ == "__main__":
    main()
