"""Build and run wsload (wsload.c beside this file), the C WebSocket load client of the realtime
benchmarks: an asyncio client costs about as much CPU per notification as the gateway, so it,
not the gateway, would set the measured rate.

    import wsload
    result = wsload.run(["--ports", "8080", "--subscribers", "1000", "--rate", "10000"])

`build()` compiles it once per version of the source (cached under the temp dir); `run()`
returns its JSON report as a dict and raises with its stderr if it failed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).resolve().parent / "wsload.c"
CACHE = Path(tempfile.gettempdir()) / "sanic-gateway-bench"


def build() -> Path:
    """The compiled client, built now if this version of wsload.c has not been yet."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    binary = CACHE / f"wsload-{digest}"
    if binary.exists():
        return binary
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError("gcc is needed to build bench/wsload.c: apt-get install gcc")
    print(f"building {SOURCE.name} with gcc into {binary} (once per version of the source)",
          file=sys.stderr)
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(f"{binary.name}.{os.getpid()}")  # concurrent builds never clash
    subprocess.run([gcc, "-O2", "-Wall", "-Wextra", "-o", str(partial), str(SOURCE)],
                   check=True, capture_output=True, text=True)
    partial.replace(binary)
    return binary


def realtime_priority() -> bool:
    """Whether `run(..., realtime=True)` can give wsload a real-time priority (chrt, root)."""
    return shutil.which("chrt") is not None and os.geteuid() == 0


def run(args: list[str], core: int | None = None, timeout: float = 600,
        on_mark: Callable[[str], None] | None = None,
        realtime: bool = False) -> dict[str, Any]:
    """Run wsload with `args` (pinned to `core` if given and taskset exists) and return its
    report; a failure raises RuntimeError with what wsload printed. `on_mark` is called with
    each phase as it begins ("publishing", "counting", "done"), as wsload enters it.
    `realtime` (where `realtime_priority()`): SCHED_FIFO, so that on a core it shares with a
    member it reads frames as they arrive instead of waiting for the member's time slice to
    end (it only takes the CPU when it has frames to read)."""
    cmd = [str(build()), *args]
    if on_mark is not None:
        cmd += ["--marks", "1"]
    if core is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(core), *cmd]
    if realtime and realtime_priority():
        cmd = ["chrt", "-f", "10", *cmd]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            said = []
            assert proc.stderr is not None and proc.stdout is not None
            for line in proc.stderr:  # the report (one line) fits the pipe's buffer meanwhile
                if line.startswith("mark ") and on_mark is not None:
                    on_mark(line[5:].strip())
                else:
                    said.append(line)
            out = proc.stdout.read()
            status = proc.wait()
        finally:
            timer.cancel()
    if status != 0:
        raise RuntimeError(f"wsload failed ({status}): {''.join(said).strip()}")
    return json.loads(out)
