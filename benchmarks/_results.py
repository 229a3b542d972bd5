"""Shared by the benchmark scripts: describe the device and write a results markdown file."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

import jax


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after one warm-up call (which compiles)."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def device_description() -> str:
    """The accelerator's kind, or the CPU model and visible core count."""
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        return f"{jax.device_count()} x {dev.device_kind} ({dev.platform})"
    model = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU: {model}, {os.cpu_count()} cores visible"


def report(body: str, path: str | None, title: str, wall_s: float | None = None) -> None:
    """Print ``body`` and, if ``path`` is given, write it there with :func:`write_markdown`'s header."""
    print(body)
    if path:
        write_markdown(path, title, body, wall_s)


def write_markdown(path: str, title: str, body: str, wall_s: float | None = None) -> None:
    """``# title (date)``, then the device, jax version, wall time and the command line, then ``body``."""
    wall = f"; total wall {wall_s:.0f} s" if wall_s is not None else ""
    header = [
        f"# {title} ({datetime.date.today().isoformat()})",
        "",
        f"- device: {device_description()}; jax {jax.__version__}{wall}",
        f"- command: `python {' '.join(sys.argv)}`",
        "",
        "",
    ]
    with open(path, "w") as f:
        f.write("\n".join(header) + body + "\n")
