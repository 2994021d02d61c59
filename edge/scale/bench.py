"""Throughput of ``classify --engine ray`` against the local engine on the same folder and machine,
Ray's start-up time and peak memory per classifier actor::

    python -m lesionlite.edge.scale.bench [FOLDER] [--images 2000] [--rounds 2] [--actors N]

Without FOLDER it copies the shipped sample lesions into a temporary folder until it holds
``--images`` files. The engines run in turn (local, ray, local, ray, ...) as the real CLI, so a
neighbour's load falls on both alike; the figures are the medians over the rounds. Memory is each
process's peak resident set (``VmHWM`` in /proc, Linux)."""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from lesionlite.edge.bench import SAMPLES
from lesionlite.edge.membench import status_kb


def make_folder(folder: Path, n: int) -> Path:
    images = sorted(SAMPLES.glob("*.jpg"))
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        src = images[i % len(images)]
        shutil.copy(src, folder / f"{i // len(images):05d}-{src.name}")
    return folder


def peak_mib(pid: int) -> float | None:
    kb = status_kb(pid, "VmHWM")
    return kb / 1024 if kb else None


def actors_now() -> list[int]:
    """Processes of Ray classifier actors (Ray names its workers' processes after the actor class)."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmd = Path(entry.path, "cmdline").read_bytes()
            except OSError:
                continue
            if b"ray::" in cmd and b"Classify" in cmd:
                pids.append(int(entry.name))
    return pids


def run(argv: list[str], cwd: Path) -> dict:
    """Run the CLI; the wall time, and the peak memory of it and of each Ray classifier actor."""
    peaks: dict[int, float] = {}
    done = threading.Event()

    def watch(root: int) -> None:
        while not done.wait(0.2):
            for pid in [root, *actors_now()]:
                value = peak_mib(pid)
                if value:
                    peaks[pid] = max(value, peaks.get(pid, 0.0))

    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "lesionlite.cli", *argv], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watcher = threading.Thread(target=watch, args=(proc.pid,), daemon=True)
    watcher.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - t
    done.set()
    watcher.join()
    if proc.returncode not in (0, 1):
        raise SystemExit(f"error: lesionlite {' '.join(argv)} exited {proc.returncode}:\n{err[-2000:]}")
    return {"wall": wall, "driver": peaks.pop(proc.pid, 0.0), "actors": list(peaks.values())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lesionlite.edge.scale.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", nargs="?", help="images to classify (default: copies of the shipped samples)")
    p.add_argument("--images", type=int, default=2000, help="images in the made folder (default 2000)")
    p.add_argument("--rounds", type=int, default=2, help="runs of each engine, alternated (default 2)")
    p.add_argument("--actors", type=int, help="--actors for the Ray engine (default: its own)")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="lesionlite-bench-scale-"))
    try:
        folder = Path(args.folder).resolve() if args.folder else make_folder(work / "images", args.images)
        n = 0  # the images the engines classify, as the Ray engine's log counts them
        one = next(f for f in sorted(folder.rglob("*")) if f.is_file())
        extra = ["--actors", str(args.actors)] if args.actors else []
        local, ray, timings = [], [], []
        local_start = run(["classify", str(one), "-o", "one.csv"], work)["wall"]
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds}: local engine ...", file=sys.stderr, flush=True)
            local.append(run(["classify", str(folder), "-o", f"local{r}.csv"], work))
            print(f"round {r + 1}/{args.rounds}: ray engine ...", file=sys.stderr, flush=True)
            ray.append(run(["classify", str(folder), "-o", f"ray{r}.csv", "--engine", "ray", *extra], work))
            log = (work / f"ray{r}.csv.ray.log").read_text()
            m = re.search(r"timing: (\d+) images; Ray start-up ([\d.]+) s, listing ([\d.]+) s, "
                          r"classification ([\d.]+) s", log)
            n = int(m.group(1))
            timings.append(tuple(float(x) for x in m.groups()[1:]))
            if (work / f"ray{r}.csv").read_bytes() != (work / f"local{r}.csv").read_bytes():
                raise SystemExit("error: the engines' rows differ")
        med = statistics.median
        local_rate = n / med(x["wall"] for x in local)
        ray_rate = n / med(x["wall"] for x in ray)
        start, listing, phase = (med(t[i] for t in timings) for i in range(3))
        actors = [a for x in ray for a in x["actors"]]
        print(f"{n} images in {folder}, {os.cpu_count()} CPUs, median of {args.rounds} round(s); same rows: yes")
        print(f"local engine   {local_rate:7.1f} images/s  (whole command; start-up {local_start:.1f} s "
              f"for one image; peak memory {max(x['driver'] for x in local):.0f} MiB)")
        print(f"ray engine     {ray_rate:7.1f} images/s  whole command = {ray_rate / local_rate:.2f} x local")
        print(f"               {n / phase:7.1f} images/s  once started (classification only) = "
              f"{n / phase / local_rate:.2f} x local")
        print(f"ray start-up   {start:.1f} s (ray.init, local instance) + {listing:.1f} s (listing in Ray tasks, "
              "first workers)")
        print(f"ray memory     peak per actor {max(actors, default=0):.0f} MiB ({len(actors)} actor process(es) "
              f"seen), driver {max(x['driver'] for x in ray):.0f} MiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
