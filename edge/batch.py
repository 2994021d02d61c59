"""Classify many files: parallel decode, one interpreter, rows streamed to an atomic output
that ``--resume`` can continue after an interruption."""
from __future__ import annotations

import csv
import io
import json
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, TextIO

import numpy as np

from lesionlite.edge.args import output_path, positive, thread_count
from lesionlite.edge.classifier import Classifier
from lesionlite.edge.errors import CommandError, LesionliteError
from lesionlite.edge.files import find_images
from lesionlite.edge.io import Busy, OutputLock
from lesionlite.edge.preprocess import ImageError, open_file
from lesionlite.edge.result import Prediction
from lesionlite.edge.resume import COLUMNS as RESUME_COLUMNS, real_path, resume_plan, row_fields
from lesionlite.edge.scope import OUT_OF_SCOPE

if TYPE_CHECKING:
    from lesionlite.edge.degrade import Alteration

FORMATS = ("csv", "jsonl", "table")


@dataclass
class Row:
    path: str
    prediction: Prediction | None = None
    error: str = ""
    stat: os.stat_result | None = None
    """The file's status when it was opened to be read (:func:`lesionlite.edge.resume.row_fields`)."""


def classify_paths(clf: Classifier, paths: list[str], workers: int = 2, tta: bool = False,
                   alter: Alteration | None = None) -> Iterator[Row]:
    """Yield a :class:`Row` per path, in order. ``workers`` threads decode up to ``2 * workers + 1``
    files ahead of the interpreter; a file that cannot be read yields a row with ``error`` set. ``alter``
    changes each decoded image first (a simulated light or camera, :mod:`lesionlite.edge.degrade`)."""
    def load(path: str) -> tuple[np.ndarray, os.stat_result]:
        fh, st = open_file(path)  # a FIFO or device is refused here, never read
        with fh:
            if alter:  # decoded as pixels() decodes (JPEG draft mode), so only the alteration differs
                return clf.preprocess(alter.load(fh, max(clf.spec.height, clf.spec.width))), st
            return clf.preprocess(fh), st

    with ThreadPoolExecutor(max(1, workers)) as pool:
        pending: deque[tuple[str, Future]] = deque()
        it = iter(paths)
        for path in it:
            pending.append((path, pool.submit(load, path)))
            if len(pending) > 2 * workers:
                break
        while pending:
            path, fut = pending.popleft()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(load, nxt)))
            try:
                rgb, st = fut.result()
                yield Row(path, clf.predict(rgb, tta), stat=st)
            except (ImageError, OSError) as exc:
                yield Row(path, error=row_error(exc))


def row_error(exc: ImageError | OSError) -> str:
    """The ``error`` of a file's row: why the image was refused, or why it could not be read."""
    if isinstance(exc, ImageError):
        return str(exc)
    return f"cannot read: {exc.strerror or exc}"


def columns(codes: list[str]) -> list[str]:
    """The CSV columns of an output for a model with these class codes."""
    return ["path", "label", "confidence", "decision", *(f"p_{c}" for c in codes), "error", "name", "reason",
            "scope", *RESUME_COLUMNS]


class ResumeError(LesionliteError, ValueError):
    """The output cannot be continued (not this command's output) or would lose an interrupted run's rows."""


class RowWriter:
    """Streams rows to ``OUTPUT.partial`` and renames it to ``OUTPUT`` when done, so ``OUTPUT``
    is never half-written. A partial file left by an interrupted run is refused unless ``resume``;
    with ``resume``, the rows of either file that :func:`~lesionlite.edge.resume.resume_plan` keeps
    are written first, and ``todo`` lists the files still to classify. The kept rows reach the new
    partial file through a rename, so no kill leaves less on disk than before. A file that is not a
    lesionlite output of this format and model is refused (:class:`ResumeError`). A path that is
    not valid UTF-8 is written byte for byte in CSV and escaped (``\\udcff``) in JSON lines; either way
    ``--resume`` finds it again. ``earlier`` are rows written elsewhere since (another engine's
    shards of an interrupted run): with ``resume`` they count as newer than either file's."""

    def __init__(self, output: Path, fmt: str, codes: list[str], resume: bool, paths: Iterable[str] = (),
                 earlier: Iterable[dict] = ()):
        self.output, self.fmt, self.codes = Path(os.path.realpath(output)), fmt, codes
        self.partial = self.output.with_name(self.output.name + ".partial")
        self.columns = columns(codes)
        try:  # one process at a time reads and writes OUTPUT and OUTPUT.partial
            self._lock = OutputLock(self.output.with_name(self.output.name + ".lock"))
        except Busy as exc:
            raise ResumeError(f"{output}: {exc}; wait for it to finish or name another --output") from None
        try:
            self._start(resume, paths, earlier)
        except BaseException:
            self._lock.release()
            raise

    def _start(self, resume: bool, paths: Iterable[str], earlier: Iterable[dict]) -> None:
        if not resume and self.partial.exists():
            raise ResumeError(f"{self.partial} holds the rows of an interrupted run: add --resume to "
                              "continue it, or delete it to start again")
        if not resume and not self._replaceable(self.output):
            raise ResumeError(f"cannot overwrite {self.output}: it is not a lesionlite {self.fmt.upper()} output for "
                              "this model's labels; name another --output or delete it")
        previous = (self._read(self.output) + self._read(self.partial) + list(earlier)) if resume else []
        plan = resume_plan(previous, paths)
        kept, self.todo = plan.kept, plan.todo
        self.rows, self.failed = len(kept), plan.failed
        fresh = self.partial.with_name(self.partial.name + ".tmp")
        self._fh = open(fresh, "w", encoding="utf-8", errors="surrogateescape", newline="")
        try:
            if self.fmt == "csv":
                # every field quoted: a carriage return in a file name is not a line break to any reader
                self._csv = csv.DictWriter(self._fh, self.columns, lineterminator="\n", quoting=csv.QUOTE_ALL)
                self._csv.writeheader()
            for key, r in kept.items():
                self._write(r if r.get("real_path") else {**r, "real_path": key})
            self._fh.flush()
            os.fsync(self._fh.fileno())
            os.replace(fresh, self.partial)  # the handle follows the file to its new name
        except BaseException:
            self._fh.close()
            fresh.unlink(missing_ok=True)
            raise

    def _replaceable(self, path: Path) -> bool:
        """True for a missing or empty file, or an output of this command, format and labels (judged by
        its first line): a rerun replaces its own earlier output, never someone else's file."""
        try:
            with open(path, "rb") as fh:
                head = fh.read(1 << 16)
        except FileNotFoundError:
            return True
        first = head.split(b"\n", 1)[0].decode("utf-8", "surrogateescape")
        if not head:
            return True
        if self.fmt == "csv":
            try:
                return self._known_columns(next(csv.reader([first]), None))
            except csv.Error:
                return False
        try:
            row = json.loads(first)
        except ValueError:
            return False
        return isinstance(row, dict) and {"path", "error"} <= row.keys()

    def _read(self, path: Path) -> list[dict]:
        if not path.is_file():
            return []
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as fh:  # "\r" stays "\r"
            text = fh.read()
        if not text:
            return []
        if self.fmt == "csv":
            reader = csv.DictReader(io.StringIO(text))
            try:
                known = self._known_columns(reader.fieldnames)
                rows = list(reader) if known else []
            except csv.Error:  # a NUL byte, say: not text this command wrote
                known = False
            if not known:
                raise ResumeError(f"cannot resume: {path} is not a lesionlite CSV for this model's labels; "
                                  "name another --output or delete it")
            if rows and not text.endswith("\n"):
                rows.pop()  # a line cut by a kill: that file is classified again
            return [r for r in rows if None not in r and None not in r.values()]
        lines = text.split("\n")  # only "\n" ends a line: json.dumps escapes the others
        lines.pop()  # "" after the last line's end, or a line cut by a kill: that file is classified again
        try:
            rows = [json.loads(line) for line in lines]
        except json.JSONDecodeError:
            rows = None
        probs = {f"p_{c}" for c in self.codes}
        if rows is None or not all(isinstance(r, dict) and {"path", "error"} <= r.keys()
                                   and (r["error"] or probs <= r.keys()) for r in rows):
            raise ResumeError(f"cannot resume: {path} is not a lesionlite JSON-lines output for this model's labels; "
                              "name another --output or delete it")
        return rows

    def _known_columns(self, names: list[str] | None) -> bool:
        """A header this command writes for these labels, or wrote before it had all of today's columns."""
        required = {"path", "label", "error", *(f"p_{c}" for c in self.codes)}
        return bool(names) and len(set(names)) == len(names) and required <= set(names) <= set(self.columns)

    def _write(self, record: dict) -> None:
        if self.fmt == "csv":
            self._csv.writerow({k: record.get(k, "") for k in self.columns})
        else:
            self._fh.write(json.dumps(record) + "\n")

    def add(self, record: dict) -> None:
        self._write(record)
        self._fh.flush()
        self.rows += 1
        self.failed += bool(record.get("error"))

    def finish(self) -> None:
        os.fsync(self._fh.fileno())  # on disk before the rename, so a power cut leaves one whole file
        self._fh.close()
        os.replace(self.partial, self.output)
        self._lock.release()

    def abandon(self) -> None:
        """Keep the partial file for ``--resume`` (if the run got as far as the output, that stays)."""
        self._fh.close()
        self._lock.release()


def record(clf: Classifier, row: Row, top_k: int) -> dict:
    """One output row: the flat form used by CSV and JSON lines, with the file's real path and
    identity (:func:`lesionlite.edge.resume.row_fields`)."""
    rec: dict = {"path": row.path, "error": row.error, **row_fields(row.path, row.stat)}
    if row.prediction is None:
        return rec
    res = clf.result(row.prediction, top_k)
    rec.update({"label": res.label, "name": res.name, "confidence": round(res.confidence, 4),
                "decision": res.decision, "reason": res.reason})
    rec.update({f"p_{c}": round(float(p), 4) for c, p in zip(clf.bundle.codes, row.prediction.probs)})
    rec["scope"] = "" if res.scope is None else round(res.scope, 4)
    rec["top"] = [{"code": c, "probability": round(p, 4)} for c, _, p in res.top]
    return rec


def add_arguments(p) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders (recursive)")
    p.add_argument("--output", "-o", type=output_path,
                   help="write rows to this file (atomically); default: table on stdout")
    p.add_argument("--format", choices=FORMATS, help="csv, jsonl or table (default: from --output's suffix)")
    p.add_argument("--top-k", type=positive(int), default=3)
    p.add_argument("--workers", type=thread_count, default=2, help="decoding threads running ahead of the model")
    p.add_argument("--resume", action="store_true",
                   help="keep the rows already in --output (or its .partial file) of files that have not changed "
                   "since (same real path, size and times), classify again those that changed or whose rows failed, "
                   "and append the rest")
    p.add_argument("--tta", action="store_true",
                   help="average over the 8 rotations and mirror images (8x slower)")


def output_format(args) -> str:
    """The format ``classify`` writes (csv, jsonl or table), once its options agree."""
    fmt = args.format or (Path(args.output).suffix.lstrip(".").lower() if args.output else "table")
    if fmt not in FORMATS:
        raise CommandError(f"cannot tell the format of {args.output}: name it .csv or .jsonl, or pass --format")
    if args.resume and not args.output:
        raise CommandError("--resume needs --output")
    if fmt == "table" and args.output:
        raise CommandError("--format table prints to the terminal; use csv or jsonl with --output")
    if fmt != "table" and not args.output:
        raise CommandError(f"--format {fmt} needs --output FILE")
    return fmt


def main(args) -> int:
    """``lesionlite classify``: exit 0 when every file was classified, 1 when any row failed."""
    import sys

    from tqdm import tqdm

    from lesionlite.edge.labels import DISCLAIMER

    fmt = output_format(args)
    paths, skipped = find_images(args.paths)
    for line in skipped:
        print(f"note: {line}", file=sys.stderr)
    if not paths:
        raise CommandError("no image files found in " + " ".join(args.paths))
    if args.output and real_path(args.output) in {real_path(p) for p in paths}:
        raise CommandError(f"--output {args.output} is one of the images to classify; name another file")
    clf = Classifier(args.model, args.threads, args.runtime, args.labels_file)
    try:
        writer = RowWriter(Path(args.output), fmt, clf.bundle.codes, args.resume, paths) if args.output else None
    except OSError as exc:  # named as the user named it, not by its partial file's name
        raise CommandError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    todo = writer.todo if writer else paths
    failed = declined = 0
    bar = None
    try:  # from here on, whatever stops the run keeps the partial file and lets go of the output's lock
        bar = tqdm(total=len(todo), unit="img", disable=None if writer else True, file=sys.stderr)
        if fmt == "table":
            if hasattr(sys.stdout, "reconfigure"):  # a file name that is not UTF-8 is shown, not a crash
                sys.stdout.reconfigure(errors="surrogateescape")
            print(f"{'path':<40} {'label':<6} {'conf':>5}  {'decision':<12} top-{args.top_k}")
        for row in classify_paths(clf, todo, args.workers, args.tta):
            rec = record(clf, row, args.top_k)
            failed += bool(row.error)
            declined += rec.get("decision") == OUT_OF_SCOPE
            if writer:
                writer.add(rec)
            else:
                print(_table_line(rec))
            bar.update()
        bar.close()
        if writer:
            writer.finish()
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        if writer:
            writer.abandon()
            print(f"interrupted: {writer.partial} keeps the rows so far; rerun with --resume to continue",
                  file=sys.stderr)
        return 130
    except BaseException:
        if writer:
            writer.abandon()
        raise
    if writer:
        failed = writer.failed
        print(f"{writer.rows} images, {failed} failed -> {args.output}", file=sys.stderr)
    say_declined(declined, sys.stderr)
    print(DISCLAIMER, file=sys.stderr)
    return 1 if failed else 0


def say_declined(declined: int, file: TextIO) -> None:
    """Both engines' summary line for the images the scope gate declined in this run, if any."""
    if declined:
        print(f"{declined} image(s) out of scope: not dermoscopic images of a skin lesion, so no label was given",
              file=file)


def _table_line(rec: dict) -> str:
    path = "".join(repr(c)[1:-1] if ord(c) < 32 or ord(c) == 127 else c for c in rec["path"])  # one line a row
    path = path if len(path) <= 40 else "..." + path[-37:]
    if rec["error"]:
        return f"{path:<40} error: {rec['error']}"
    if rec["decision"] == OUT_OF_SCOPE:  # no label is the answer: say why instead
        return f"{path:<40} {'-':<6} {'-':>5}  {rec['decision']:<12} {rec['reason']}"
    top = ", ".join(f"{t['code']} {t['probability']:.2f}" for t in rec.get("top", []))
    return f"{path:<40} {rec['label']:<6} {rec['confidence']:>5.2f}  {rec['decision']:<12} {top}"
