"""Realtime filter matching: this gateway's engine against Koncorde itself, documents per second.

For each keyword (equals, in, range, exists, and a two-clause and) 10,000 filters are registered
in one collection, then the same generated documents are matched over and over for --seconds by
each engine in turn: the Python engine in this process, Koncorde (npm `koncorde` 4.x) in a node
process running tests/koncorde/koncorde.js. Both are single-threaded and pinned to the same core
(taskset / sched_setaffinity, --cpu). Rates are documents per second of CPU time of each process
(user + system), so that other work on a shared machine does not skew them. Rounds alternate
python, node, python, node... and the best rate of each is kept. Both engines must find the same
number of matches on one pass over the documents (checked, printed). Prints rates and the ratio
python/node (goal: >= 1.0 for equals, >= 0.5 for the others).

    npm ci   # once: installs koncorde
    python bench/realtime_match.py [--filters 10000] [--documents 2000] [--seconds 3] \
        [--rounds 2] [--cpu 0] [--keywords equals,in,range,exists,and] [--clock cpu|wall]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as `python bench/<script>.py`

import common

sys.path.insert(0, str(common.ROOT))  # the project, even when not installed

from sanic_gateway.realtime import Engine

HELPER = common.ROOT / "tests" / "koncorde" / "koncorde.js"
FIELDS = [f"field{i}" for i in range(10)]


def workload(keyword: str, count: int, documents: int, rng: random.Random):
    """(filters, documents) for one keyword: distinct filters, documents that match some."""
    filters: list[dict] = []
    docs: list[dict] = []
    if keyword == "equals":
        filters = [{"equals": {FIELDS[i % 10]: i // 10}} for i in range(count)]
        top = count // 10 * 2
        docs = [{f: rng.randrange(top) for f in FIELDS} for _ in range(documents)]
    elif keyword == "in":
        filters = [{"in": {FIELDS[i % 10]: [f"v{i // 10}", f"w{i // 10}", f"x{i // 10}"]}}
                   for i in range(count)]
        top = count // 10 * 2
        docs = [{f: f"{rng.choice('vwxyz')}{rng.randrange(top)}" for f in FIELDS}
                for _ in range(documents)]
    elif keyword == "range":
        filters = []
        for i in range(count):
            low = (i // 10) * 10.0
            filters.append({"range": {FIELDS[i % 10]: {"gte": low, "lt": low + 50 + i % 7}}})
        top = count // 10 * 10
        docs = [{f: rng.uniform(0, top) for f in FIELDS} for _ in range(documents)]
    elif keyword == "exists":
        names = [f"key{i}" for i in range(count)]
        filters = [{"exists": name} for name in names]
        docs = [{name: 1 for name in rng.sample(names, 10)} | {f"other{j}": 1 for j in range(10)}
                for _ in range(documents)]
    elif keyword == "and":
        filters = [{"and": [{"equals": {FIELDS[i % 10]: i // 100}},
                            {"equals": {FIELDS[(i + 3) % 10]: (i // 10) % 10}}]}
                   for i in range(count)]
        top = count // 100
        docs = [{f: rng.randrange(top) for f in FIELDS} for _ in range(documents)]
    return filters, docs


def run_python(filters, docs, seconds: float, clock) -> tuple[float, int, float]:
    engine = Engine()
    start = time.perf_counter()
    for f in filters:
        engine.register("bench", "c", f)
    register_s = time.perf_counter() - start
    test = engine.test
    check = sum(len(test("bench", "c", d)) for d in docs)
    done = 0
    n = len(docs)
    start = clock()
    while clock() - start < seconds:
        batch = docs[done % n: done % n + 256]
        for d in batch:
            test("bench", "c", d)
        done += len(batch)
    return done / (clock() - start), check, register_s


def run_node(filters, docs, seconds: float, cpu: int | None, clock: str) -> tuple[float, int]:
    command = ["node", str(HELPER), "bench"]
    if cpu is not None and shutil.which("taskset"):
        command = ["taskset", "-c", str(cpu), *command]
    payload = json.dumps(
        {"filters": filters, "documents": docs, "seconds": seconds, "clock": clock}).encode()
    done = subprocess.run(command, input=payload, capture_output=True, cwd=common.ROOT,
                          check=True, timeout=600)
    out = json.loads(done.stdout)
    return out["rate"], out["check"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--filters", type=int, default=10_000)
    parser.add_argument("--documents", type=int, default=2_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cpu", type=int, default=0)
    parser.add_argument("--keywords", default="equals,in,range,exists,and")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="rates per second of CPU time (default) or of wall time")
    args = parser.parse_args()
    if not shutil.which("node") or not (common.ROOT / "node_modules" / "koncorde").is_dir():
        print("node and npm's koncorde are needed: npm ci", file=sys.stderr)
        return 1
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    goals = {"equals": 1.0}
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(f"{args.filters} filters per keyword, {args.documents} documents, "
          f"{args.seconds}s ({args.clock} time) x {args.rounds} rounds per engine, both pinned to "
          f"cpu {args.cpu}")
    print(f"{'keyword':8} {'python docs/s':>14} {'koncorde docs/s':>16} {'ratio':>7} "
          f"{'goal':>5}  matches/doc  register")
    for keyword in args.keywords.split(","):
        rng = random.Random(keyword)
        filters, docs = workload(keyword, args.filters, args.documents, rng)
        best_py = best_node = 0.0
        for _ in range(args.rounds):
            rate, check_py, register_s = run_python(filters, docs, args.seconds, clock)
            best_py = max(best_py, rate)
            rate, check_node = run_node(filters, docs, args.seconds, args.cpu, args.clock)
            best_node = max(best_node, rate)
        goal = goals.get(keyword, 0.5)
        same = "" if check_py == check_node else f"  MISMATCH koncorde={check_node / len(docs):.2f}"
        print(f"{keyword:8} {best_py:14.0f} {best_node:16.0f} {best_py / best_node:7.2f} "
              f"{goal:5.1f}  {check_py / len(docs):11.2f}  {register_s:6.2f}s{same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
