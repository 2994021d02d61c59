"""``lesionlite classify PATH... --engine ray``: the rows of the local engine, computed by Ray Data
on the cores of this machine or the nodes of a cluster.

The pipeline is Ray Data end to end; the decoding, the classifier and the rows are edge code::

    from_items(PATH arguments) . flat_map(find_images)          the listing, one task per PATH
    from_items(files to do) . map_batches(decode)                decode + preprocess, in tasks
      . map_batches(Classify, ActorPoolStrategy(size=N))         one Classifier per actor, built once
      . write_parquet(OUTPUT.parquet/run-*)                      Ray's writer: the Parquet shards

The driver then passes the shards' rows to edge's ``RowWriter``, which writes the CSV or JSON
lines the user asked for (one file, atomic, resumable) exactly as the local engine does. Scheduling,
retries (tasks and actors of a lost node), backpressure and block sizes are Ray's: this module only
sizes the actors and the tasks so that both always fit (:func:`plan`).

Files and folders must be at the same path on every node (a shared or network file system), as the
output folder must: each task works in the driver's working directory.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterator, TextIO

import numpy as np

from lesionlite.edge.batch import (Row, RowWriter, columns, output_format, record, row_error,
                                   say_declined)
from lesionlite.edge.bundle import Bundle, load_bundle
from lesionlite.edge.classifier import Classifier
from lesionlite.edge.errors import CommandError, LesionliteError
from lesionlite.edge.files import find_images
from lesionlite.edge.preprocess import ImageError, InputSpec, model_pixels, open_file
from lesionlite.edge.resume import file_identity
from lesionlite.edge.scope import OUT_OF_SCOPE

PATHS_PER_BLOCK = 128
"""Files per input block: one decode task each (about 19 MB of 224 px images, well under Ray's block
size), and small enough that a lost task repeats little work."""
BATCH = 32
"""Images per classifier call."""
ROWS_PER_SHARD = 1000
"""Rows per Parquet file at least (Ray merges blocks up to it): a run of 10^6 images writes some 1,000
files, and a run cut short keeps all but its last 1,000 rows or so for --resume."""


@dataclass(frozen=True)
class Plan:
    """How many classifier actors run and how much CPU Ray reserves for each actor and each task."""

    actors: int
    actor_cpus: float
    task_cpus: float

    def __str__(self) -> str:
        return f"{self.actors} actor(s) x {self.actor_cpus:g} CPU, tasks {self.task_cpus:g} CPU"


def plan(cluster_cpus: float, smallest_node_cpus: float, actors: int | None = None) -> Plan:
    """Size the actors and the tasks so that both always fit, on any CPU count.

    The actors together reserve at most half of the cluster's CPUs (fractions of a CPU when more
    actors are asked for than that), and one actor at most half of the smallest node; a decode or
    write task reserves at most a quarter of the smallest node. So, wherever the actors land, the
    tasks that feed them can start beside them. (Ray Data 2.60 with two 1-CPU actors on a 2-CPU
    machine stalled for minutes: the actors held both CPUs and the reads never ran.) Reserved CPUs
    are Ray's bookkeeping, not a limit: an actor's interpreter may use more threads."""
    node = max(smallest_node_cpus, 1e-3)
    n = actors or max(1, int(cluster_cpus // 2))
    actor_cpus = min(1.0, node / 2, cluster_cpus / 2 / n)
    return Plan(n, _round_down(actor_cpus), _round_down(min(1.0, node / 4)))


def _round_down(cpus: float) -> float:
    return max(math.floor(cpus * 1000) / 1000, 0.001)  # Ray's resolution is 1/10000 of a CPU


# --- the work done in Ray tasks and actors (module-level, so workers import it by name) -------------

def list_paths(row: dict, cwd: str) -> list[dict]:
    """The image files of one PATH argument, as the local engine finds them (edge ``find_images``),
    and the notes about what it left out."""
    os.chdir(cwd)  # paths stay spelled as the user gave them ("a.jpg", not "/home/.../a.jpg")
    try:
        images, skipped = find_images([os.fsdecode(row["root"])])
    except OSError:  # the driver names it as the local engine does
        return [{"arg": row["arg"], "path": row["root"], "note": "", "missing": True}]
    return ([{"arg": row["arg"], "path": os.fsencode(p), "note": "", "missing": False} for p in images]
            + [{"arg": row["arg"], "path": b"", "note": line, "missing": False} for line in skipped])


def decode(batch: dict, spec: InputSpec, cwd: str) -> dict:
    """Decode and preprocess a batch of files (edge ``model_pixels``); a file that cannot be read or
    decoded keeps its row with the error the local engine gives it (edge ``row_error``)."""
    os.chdir(cwd)
    images = np.zeros((len(batch["path"]), spec.height, spec.width, 3), np.uint8)
    errors, ids = [], []
    for i, raw in enumerate(batch["path"]):
        st = None
        try:
            fh, st = open_file(os.fsdecode(raw))  # a FIFO or device is refused here, as locally
            with fh:
                images[i] = model_pixels(fh, spec)
            errors.append("")
        except (ImageError, OSError) as exc:
            errors.append(row_error(exc))
            st = None  # a failed row carries no identity, as the local engine's
        ids.append(file_identity(st) if st is not None else "")  # the identity --resume matches rows by
    return {"path": batch["path"], "image": images, "error": np.array(errors, dtype=object),
            "file_id": np.array(ids, dtype=object)}


class Progress:
    """Images classified so far, counted by the actors for the driver's progress bar (Ray's own bar
    counts the files its writer wrote, not images)."""

    def __init__(self):
        self.n = 0

    def add(self, n: int) -> None:
        self.n += n

    def count(self) -> int:
        return self.n


class Classify:
    """A Ray actor's classifier: the model is loaded once, in the constructor, and each batch of
    decoded images becomes rows (edge ``record``)."""

    def __init__(self, bundle: Bundle, threads: int | None, runtime: str, top_k: int, tta: bool, cwd: str,
                 progress=None):
        os.chdir(cwd)
        self.clf = Classifier(bundle, threads, runtime)
        self.top_k, self.tta, self.progress = top_k, tta, progress
        self.columns = columns(self.clf.bundle.codes)

    def __call__(self, batch: dict):
        records = []
        for raw, image, error, file_id in zip(batch["path"], batch["image"], batch["error"], batch["file_id"]):
            path = os.fsdecode(raw)
            if error:
                row = Row(path, error=str(error))
            else:
                try:
                    row = Row(path, self.clf.predict(image, self.tta))
                except (ImageError, OSError) as exc:
                    row = Row(path, error=row_error(exc))
            records.append({**record(self.clf, row, self.top_k), "file_id": str(file_id)})
        if self.progress is not None:
            self.progress.add.remote(len(records))  # not awaited: the bar may lag, the work does not
        return shard_table(records, self.columns)


def shard_table(records: list[dict], cols: list[str]):
    """Rows as a Parquet shard's table: a typed column for each CSV column (probabilities and
    confidence as doubles), ``top`` as a list of (code, probability), and ``record``, the row exactly
    as the CSV and JSON-lines writer takes it (JSON, which keeps a file name that is not UTF-8)."""
    import pyarrow as pa

    data = {}
    for c in cols:
        values = [r.get(c) for r in records]
        if c in ("path", "real_path"):  # Arrow strings are UTF-8: a name that is not is shown with \xNN escapes
            values = [v.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") for v in values]
        numeric = c in ("confidence", "scope") or c.startswith("p_")
        if numeric:  # an error row has none, and a bundle without a gate no scope score
            values = [None if v == "" else v for v in values]
        data[c] = pa.array(values, type=pa.float64() if numeric else pa.string())
    top = pa.list_(pa.struct([("code", pa.string()), ("probability", pa.float64())]))
    data["top"] = pa.array([r.get("top") for r in records], type=top)
    data["record"] = pa.array([json.dumps(r) for r in records], type=pa.string())
    return pa.table(data)


# --- the driver --------------------------------------------------------------------------------------

def shard_files(folder: Path) -> list[Path]:
    """A run's Parquet files in the order Ray wrote them (task index, then part)."""
    return sorted(folder.glob("*.parquet"))


def read_shards(folders: list[Path], log: TextIO) -> Iterator[dict]:
    """The rows of these runs' shards, run by run. A file a kill cut short is passed over (its rows
    are classified again), and named in the log."""
    import pyarrow.parquet as pq

    for folder in folders:
        for f in shard_files(folder):
            try:
                table = pq.read_table(f, columns=["record"])
            except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a cut file
                print(f"shard {f} is unreadable ({exc}): its rows are classified again", file=log, flush=True)
                continue
            for text in table.column("record").to_pylist():
                yield json.loads(text)


@contextlib.contextmanager
def ray_output_in(log_path: Path) -> Iterator[tuple[TextIO, TextIO]]:
    """Send everything Ray prints (its Python logging, warnings, and the C++ core's lines on file
    descriptor 2) to ``log_path``; yield (the log, the terminal's stderr) for our own lines and the
    progress bar, the only ones the terminal shows."""
    sys.stdout.flush()
    sys.stderr.flush()
    log = open(log_path, "a", encoding="utf-8", errors="backslashreplace", buffering=1)
    saved = os.dup(2)
    os.dup2(log.fileno(), 2)
    terminal = os.fdopen(os.dup(saved), "w", encoding="utf-8", errors="backslashreplace", buffering=1)
    old_stderr, old_showwarning = sys.stderr, warnings.showwarning
    redirected: list[tuple[logging.StreamHandler, object]] = []
    try:
        import ray  # noqa: F401  its loggers bind to the stderr of now, which is the log
        import ray.data  # noqa: F401

        for logger in [logging.getLogger(), *(logging.getLogger(n) for n in list(logging.root.manager.loggerDict)
                                              if n.startswith("ray"))]:
            for h in getattr(logger, "handlers", []):
                if type(h) is logging.StreamHandler and h.stream is not log:
                    redirected.append((h, h.setStream(log)))
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: log.write(
            warnings.formatwarning(message, category, filename, lineno, line))
        sys.stderr = terminal
        yield log, terminal
    finally:
        sys.stderr, warnings.showwarning = old_stderr, old_showwarning
        for h, stream in redirected:
            h.setStream(stream)
        terminal.flush()
        os.dup2(saved, 2)
        os.close(saved)
        terminal.close()
        log.close()


def start_ray(address: str | None, log: TextIO) -> str:
    """Start a local Ray instance (all this machine's cores), or join the cluster at ``address``.
    Returns what was started or joined, for the log."""
    import ray

    kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=True,
                  logging_level=logging.INFO)
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(address="local", **kwargs)  # "local": never another user's instance on this machine
    ctx = ray.get_runtime_context()
    where = f"Ray {ray.__version__}, {'cluster at ' + address if address else 'a local instance'}"
    print(f"{datetime.now():%Y-%m-%d %H:%M:%S} {where}; Ray's session logs: "
          f"{getattr(ray._private.worker.global_worker.node, 'get_logs_dir_path', lambda: '?')()}"
          f" (job {ctx.get_job_id()})", file=log, flush=True)
    return where


def cluster_plan(actors: int | None) -> Plan:
    import ray

    cpus = [n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")]
    cpus = [c for c in cpus if c > 0] or [1.0]
    return plan(sum(cpus), min(cpus), actors)


def configure_data() -> None:
    """Ray Data's settings for this run: results in input order (the rows come out in the local
    engine's order), no progress bars of Ray's (they count files written, and print a block every 10 s
    when not on a terminal: the one bar is ours, in images), no statistics block after a run."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    ctx.enable_auto_log_stats = False
    ctx.print_on_execution_start = False


def list_files(roots: list[str], cwd: str) -> tuple[list[str], list[str]]:
    """Every PATH argument listed in a Ray task of its own; the files in argument order."""
    import ray

    ds = ray.data.from_items([{"arg": i, "root": os.fsencode(p)} for i, p in enumerate(roots)],
                             override_num_blocks=len(roots))
    rows = ds.flat_map(list_paths, fn_kwargs={"cwd": cwd}).take_all()
    for r in rows:
        if r["missing"]:
            root = os.fsdecode(r["path"])
            find_images([root])  # raises the local engine's error
            raise FileNotFoundError(2, "no such file or folder on a Ray node (is it on storage every node "
                                    "mounts at the same path?)", root)
    rows.sort(key=lambda r: r["arg"])  # stable: each argument's files stay in find_images' order
    return ([os.fsdecode(r["path"]) for r in rows if not r["note"]], [r["note"] for r in rows if r["note"]])


def classify(todo: list[str], bundle: Bundle, args, the_plan: Plan, out: Path, cwd: str, terminal: TextIO) -> None:
    """Classify ``todo`` into Parquet shards under ``out``: decoding in tasks, one Classifier per actor.
    A progress bar on the terminal (none when not on one, as the local engine's)."""
    import threading

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    from tqdm import tqdm

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    progress = ray.remote(num_cpus=0, scheduling_strategy=here)(Progress).remote()  # lives with the driver
    bar = tqdm(total=len(todo), unit="img", disable=None, file=terminal)
    done = threading.Event()

    def follow() -> None:
        while not done.wait(0.5):
            try:
                bar.update(min(ray.get(progress.count.remote(), timeout=5), bar.total) - bar.n)
            except Exception:  # noqa: BLE001  a bar that stops must not stop the run
                return

    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    try:
        _pipeline(todo, bundle, args, the_plan, out, cwd, progress)
        bar.update(bar.total - bar.n)
    finally:
        done.set()
        watcher.join()
        bar.close()


def _pipeline(todo, bundle, args, the_plan, out, cwd, progress) -> None:
    import ray

    ds = ray.data.from_items([{"path": os.fsencode(p)} for p in todo],
                             override_num_blocks=max(1, math.ceil(len(todo) / PATHS_PER_BLOCK)))
    ds = ds.map_batches(decode, batch_size=None, fn_kwargs={"spec": bundle.input, "cwd": cwd},
                        num_cpus=the_plan.task_cpus)
    ds = ds.map_batches(Classify, batch_size=BATCH, num_cpus=the_plan.actor_cpus,
                        compute=ray.data.ActorPoolStrategy(size=the_plan.actors),
                        fn_constructor_kwargs={"bundle": bundle, "threads": args.threads, "runtime": args.runtime,
                                               "top_k": args.top_k, "tta": args.tta, "cwd": cwd,
                                               "progress": progress})
    ds.write_parquet(str(out), min_rows_per_file=ROWS_PER_SHARD, ray_remote_args={"num_cpus": the_plan.task_cpus})


def _cause(exc: BaseException) -> BaseException:
    """The error raised in a Ray task, under the wrappers Ray and Ray Data put around it."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "cause", None) or exc.__cause__
        if not isinstance(inner, BaseException):
            break
        exc = inner
    return exc


def describe(exc: BaseException) -> str:
    """One line for a failure inside Ray: the error Ray reports, without its traceback."""
    cause = _cause(exc)
    text = next((line.strip() for line in str(cause).splitlines() if line.strip()), "")
    return f"{type(cause).__name__}: {text[:300]}" if text else type(cause).__name__


def main(args) -> int:
    """``lesionlite classify --engine ray``: exit 0 when every file was classified, 1 when any row
    failed, 2 when the run could not be done (the message names the log), 130 on Ctrl-C."""
    from lesionlite.edge.labels import DISCLAIMER

    fmt = output_format(args)
    if fmt == "table":
        raise CommandError("--engine ray writes its rows to a file: add --output FILE.csv (or .jsonl)")
    output = Path(os.path.realpath(args.output))
    shards = output.with_name(output.name + ".parquet")
    log_path = output.with_name(output.name + ".ray.log")
    cwd = os.getcwd()
    stage = "starting Ray"
    writer = None
    with ray_output_in(log_path) as (log, terminal):
        t0 = time.perf_counter()
        try:
            where = start_ray(args.address, log)
            started = time.perf_counter() - t0
            configure_data()
            stage = "listing the files"
            paths, skipped = list_files(args.paths, cwd)
            listed = time.perf_counter() - t0
            for line in skipped:
                print(f"note: {line}", file=terminal)
            if not paths:
                raise CommandError("no image files found in " + " ".join(args.paths))
            stage = "loading the model"
            bundle = load_bundle(args.model, args.labels_file)
            stage = "reading the earlier runs' shards"
            runs = sorted(shards.glob("run-*")) if shards.is_dir() else []
            earlier = read_shards(runs, log) if args.resume else ()
            try:
                writer = RowWriter(output, fmt, bundle.codes, args.resume, paths, earlier)
            except OSError as exc:
                raise CommandError(f"cannot write {args.output}: {exc.strerror or exc}") from None
            todo = writer.todo
            run = shards / f"run-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
            the_plan = cluster_plan(args.actors)
            print(f"{where}: {len(todo)} of {len(paths)} images to classify, {the_plan}", file=log, flush=True)
            t1 = time.perf_counter()
            if todo:
                stage = "classifying"
                classify(todo, bundle, args, the_plan, run, cwd, terminal)
            classified = time.perf_counter() - t1
            stage = f"writing {args.output}"
            declined = 0
            for rec in read_shards([run], log):
                writer.add(rec)
                declined += rec.get("decision") == OUT_OF_SCOPE
            writer.finish()
            if not args.resume:  # the earlier runs' rows were those of the output just replaced
                for old in runs:
                    _remove_run(old)
        except KeyboardInterrupt:
            if writer:
                writer.abandon()
                print(f"interrupted: {writer.partial} and {shards} keep the rows so far; rerun with --resume "
                      "to continue", file=terminal)
            else:
                print("interrupted", file=terminal)
            return 130
        except (LesionliteError, FileNotFoundError):
            if writer:  # reported by the command as the local engine's are
                writer.abandon()
            raise
        except Exception as exc:  # Ray's errors and any other: the traceback to the log, one line here
            if writer:
                writer.abandon()
            traceback.print_exc(file=log)
            print(f"error: the Ray run failed while {stage} ({describe(exc)}); full log: {log_path}",
                  file=terminal)
            if writer:
                print(f"note: {writer.partial} and {shards} keep the rows so far; rerun with --resume to "
                      "continue", file=terminal)
            return 2
        finally:
            _shutdown(log)
        print(f"timing: {len(todo)} images; Ray start-up {started:.2f} s, listing {listed - started:.2f} s, "
              f"classification {classified:.2f} s, in all {time.perf_counter() - t0:.2f} s", file=log, flush=True)
        print(f"{writer.rows} images, {writer.failed} failed -> {args.output} "
              f"(Parquet shards: {shards}; Ray log: {log_path})", file=terminal)
        say_declined(declined, terminal)
        print(DISCLAIMER, file=terminal)
    return 1 if writer.failed else 0


def _remove_run(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def _shutdown(log: TextIO) -> None:
    import ray

    try:
        ray.shutdown()  # stops a local instance; leaves a cluster that was joined running
    except Exception:  # noqa: BLE001  a failed shutdown must not hide the run's own outcome
        traceback.print_exc(file=log)
