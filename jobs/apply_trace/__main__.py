"""Where the apply phase's throughput goes: calls in flight per task, round trips, pieces.

Run a benchmark with the tracer (``jobs/apply_trace/sitecustomize.py``), then read it::

    mkdir -p /tmp/trace && SMART_TRACE_DIR=/tmp/trace PYTHONPATH=$PWD/jobs/apply_trace:$PWD \\
        python -m jobs.bench_spark --rows 20000
    python -m jobs.apply_trace /tmp/trace

Per apply task: the share of its time with no call in flight (slots idle, e.g.
between pieces), with fewer than half the slots busy, and with all of them busy,
the mean calls in flight (Little: rate x round trip), the client's round trip
against the server's dwell, each piece's time before its first call, the
garbage collections inside the task's window (and, with ``SMART_TRACE_LAG=1``,
how late its event loop runs), and its start-up counted from the driver's
warm-up request: worker forked, warm-up imports, apply task, first piece, first
call.
"""

from __future__ import annotations

import bisect
import collections
import glob
import os
import statistics
import sys


def _read(folder: str) -> dict[str, dict[str, list[tuple[float, ...]]]]:
    processes = {}
    for path in glob.glob(os.path.join(folder, "trace-*.txt")):
        records = collections.defaultdict(list)
        with open(path) as lines:
            for line in lines:
                kind, *values = line.split()
                records[kind].append(tuple(float(v) for v in values))
        processes[os.path.basename(path)[6:-4]] = records
    return processes


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    return " ".join(f"p{p}={ordered[min(len(ordered) - 1, len(ordered) * p // 100)] * 1000:.1f}" for p in (10, 50, 90, 99))


def _occupancy(calls: list[tuple[float, ...]], slots: int) -> str:
    events = sorted([(start, 1) for start, _ in calls] + [(end, -1) for _, end in calls])
    time_at = collections.Counter()
    in_flight, last = 0, events[0][0]
    for at, change in events:
        time_at[in_flight] += at - last
        in_flight, last = in_flight + change, at
    window = events[-1][0] - events[0][0]
    share = lambda keep: sum(t for n, t in time_at.items() if keep(n)) / window  # noqa: E731
    return (f"window {window:.1f}s: none in flight {share(lambda n: n == 0):.3f}, fewer than {slots // 2} "
            f"{share(lambda n: n < slots // 2):.3f}, all {slots} {share(lambda n: n >= slots):.3f}; "
            f"mean in flight {sum(n * t for n, t in time_at.items()) / window:.2f}")


def _collections(records: list[tuple[float, ...]], start: float, end: float) -> str:
    """Garbage collections inside the task's window: every thread of the worker stalls while one runs."""
    inside = [(t1 - t0, int(generation)) for t0, t1, generation in records if start <= t0 <= end]
    by_generation = collections.defaultdict(list)
    for seconds, generation in inside:
        by_generation[generation].append(seconds)
    parts = [f"gen{g}: {len(s)} x, {sum(s):.2f}s, longest {max(s) * 1000:.0f} ms" for g, s in sorted(by_generation.items())]
    stalled = sum(seconds for seconds, _ in inside)
    return f"garbage collection {stalled:.2f}s of the {end - start:.1f}s window ({'; '.join(parts) or 'none'})"


def _start_up(records: dict[str, list[tuple[float, ...]]], asked: float, first_call: float) -> str:
    """Seconds after the driver asked for the warm-up: where the task's first call waited."""
    steps = []
    if records["proc"]:
        at, age = records["proc"][0]
        steps.append(f"worker forked {at - age - asked:+.2f}")
    steps += [f"warm-up imports {a - asked:+.2f}..{b - asked:+.2f}" for a, b in records["warm"]]
    steps += [f"apply task {a - asked:+.2f}" for a, _, _ in records["task"]]
    if records["piece"]:
        steps.append(f"first piece {min(p[0] for p in records['piece']) - asked:+.2f}")
    steps.append(f"first call {first_call - asked:+.2f}")
    return "start-up, seconds after the warm-up was asked for: " + ", ".join(steps)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(__doc__)
        return 2
    slots = int(args[1]) if len(args) > 1 else 16
    processes = _read(args[0])
    asked = [r[0] for records in processes.values() for r in records["warmstart"]]
    for pid, records in sorted(processes.items()):
        if records["srv"]:
            print(f"server (pid {pid}): dwell ms {_ms([b - a for a, b in records['srv']])}")
        if not records["piece"] or not records["call"]:
            continue
        calls = sorted(records["call"])
        starts = [start for start, _ in calls]
        print(f"task (pid {pid}): {len(calls)} calls; round trip ms {_ms([b - a for a, b in calls])}")
        print(f"  {_occupancy(calls, slots)}")
        before_first = [starts[i] - piece[0] for piece in records["piece"]
                        if (i := bisect.bisect_left(starts, piece[0])) < len(starts)]
        cpu = [piece[3] * 1000 for piece in records["piece"]]
        print(f"  {len(records['piece'])} pieces: piece start to its first call ms {_ms(before_first)}; "
              f"thread CPU per piece ms median {statistics.median(cpu):.0f}")
        print(f"  {_collections(records['gc'], calls[0][0], calls[-1][1])}")
        lags = [late for at, late in records["lag"] if calls[0][0] <= at <= calls[-1][1]]
        if lags:
            print(f"  event loop lateness ms {_ms(lags)}, mean {statistics.mean(lags) * 1000:.2f}")
        if asked:
            print(f"  {_start_up(records, asked[-1], calls[0][0])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
