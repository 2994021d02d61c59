"""``lesionlite bench --memory``: the peak memory (RSS) of ``lesionlite classify`` and of
``lesionlite serve`` on the worst images still under the pixel limit, against the targets the device
needs (a Raspberry Pi has 1-8 GB): :data:`TARGETS_MB`.

The images are made in a temporary folder: 7070 x 7070 pixels (just under 50 million) of a sample
lesion, so most compress to little: a 16-bit grey PNG, a 16-bit TIFF (and one in a single strip), a
32-bit float TIFF, a palette GIF with transparency, RGB and RGBA PNGs, a progressive JPEG and a
lossless WebP; and a JPEG of noise just under the 16 MB upload limit. Each is classified by a fresh ``lesionlite classify`` process, then all of them at
once with two decoding workers; a fresh ``lesionlite serve`` gets each in four concurrent uploads,
twice, and reports its peak and what it still holds afterwards. Some of these are refused ("too large
to decode in memory"): refusing one is a pass, provided it is refused within the memory.

Each process measures itself (``VmHWM``, the kernel's high-water mark of its resident memory), not
``getrusage`` of children, which counts the memory of the process that started them.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

SIDE = 7070
"""The images' side: 49,984,900 pixels, under the 50 million that are refused unread."""
TARGETS_MB = {"classify": 200, "serve": 300}
"""Peak RSS, in MB (10^6 bytes), that ``classify`` (one image, or a folder with two workers) and
``serve`` (four concurrent uploads) stay under."""
UPLOADS = 4

IMAGES = {
    "16-bit grey PNG": "grey16.png",
    "16-bit grey TIFF (deflate)": "grey16.tif",
    "16-bit grey TIFF (one strip)": "grey16-strip.tif",
    "float TIFF (deflate)": "float.tif",
    "palette GIF, transparent": "palette.gif",
    "RGB PNG": "rgb.png",
    "RGBA PNG": "rgba.png",
    "progressive JPEG": "progressive.jpg",
    "lossless WebP": "lossless.webp",
    "noisy JPEG near the upload limit": "noisy.jpg",
}
"""What is measured: a description and the file's name."""

_MAKE = r'''
import sys
from pathlib import Path
import numpy as np
from PIL import Image, TiffImagePlugin
folder, side, sample = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rgb = Image.open(sample).convert("RGB").resize((side, side), Image.NEAREST)
rgb.save(folder / "rgb.png")
rgb.save(folder / "progressive.jpg", quality=90, progressive=True)
rgb.save(folder / "lossless.webp", lossless=True, quality=0)
rgba = rgb.convert("RGBA")
rgba.putalpha(Image.new("L", rgb.size, 200))
rgba.save(folder / "rgba.png")
del rgba
grey = rgb.convert("L")
del rgb
grey16 = Image.fromarray(np.asarray(grey, np.uint16) * 257)
grey16.save(folder / "grey16.png")
grey16.save(folder / "grey16.tif", compression="tiff_deflate")
TiffImagePlugin.STRIP_SIZE = 2**31 - 1  # the whole image in one strip: libtiff buffers all of it
grey16.save(folder / "grey16-strip.tif", compression="tiff_deflate")
del grey16
grey.convert("F").save(folder / "float.tif", compression="tiff_deflate")
palette = grey.convert("P")
palette.save(folder / "palette.gif", transparency=0)
del palette, grey
side = 4200
while True:  # a photo of noise as large as an upload may be (16 MB): what serve holds while it answers
    noise = np.random.default_rng(0).integers(0, 256, (side * 3 // 4, side, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "noisy.jpg", quality=92)
    if (folder / "noisy.jpg").stat().st_size < 15.5e6:
        break
    side -= 200
'''

_REPORT_PEAK = r'''
import atexit, os, resource, sys

def _report():
    try:
        status = open("/proc/self/status").read()
        kb = int(status.split("VmHWM:")[1].split()[0])
    except (OSError, IndexError, ValueError):
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open(os.environ["LESIONLITE_PEAK_FILE"], "w") as fh:
        fh.write(str(kb))
atexit.register(_report)
from lesionlite.cli import main
sys.exit(main(sys.argv[1:]))
'''


def make_images(folder: Path) -> dict[str, Path]:
    """The images of :data:`IMAGES` in ``folder``, made by a separate process (so this one stays small)."""
    from lesionlite.edge.bench import sample_image
    from lesionlite.edge.errors import CommandError

    sample = sample_image()
    if sample is None:
        raise CommandError("--memory needs the repository's samples/lesions (a checkout)")
    subprocess.run([sys.executable, "-c", _MAKE, str(folder), str(SIDE), str(sample)], check=True)
    return {name: folder / file for name, file in IMAGES.items()}


def status_kb(pid: int, field: str) -> int | None:
    """A kB field (VmHWM, VmRSS) of a process's /proc status, or None where there is none."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            match = re.search(rf"^{field}:\s+(\d+) kB", fh.read(), re.M)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def classify_peak(paths: list[Path], out: Path, model_args: list[str], workers: int = 2) -> dict:
    """Peak RSS (MB) of one ``lesionlite classify`` process over ``paths``, and what became of them."""
    peak_file = out.with_suffix(".peak")
    env = {**os.environ, "LESIONLITE_PEAK_FILE": str(peak_file), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", _REPORT_PEAK, "classify", *map(str, paths), "-o", str(out),
                           "--workers", str(workers), *model_args], capture_output=True, text=True, env=env)
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    out.unlink(missing_ok=True)
    peak = int(peak_file.read_text()) * 1024 / 1e6 if peak_file.exists() else None
    peak_file.unlink(missing_ok=True)
    return {"peak_mb": peak, "exit": proc.returncode, "rows": [r["error"] or r["label"] for r in rows],
            "stderr": proc.stderr.strip().splitlines()[-1:] if proc.returncode > 1 else []}


def _post(port: int, data: bytes, name: str) -> tuple[int, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        conn.request("POST", "/api/classify", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        response = conn.getresponse()
        payload = json.loads(response.read() or b"{}")
    finally:
        conn.close()
    return response.status, payload.get("label") or payload.get("error", "")


def serve_peak(path: Path, model_args: list[str], uploads: int = UPLOADS, rounds: int = 2) -> dict:
    """Peak RSS (MB) of a fresh ``lesionlite serve`` given ``path`` in ``uploads`` concurrent uploads,
    ``rounds`` times, and its RSS once they are answered."""
    proc = subprocess.Popen([sys.executable, "-m", "lesionlite.cli", "serve", "--port", "0", *model_args],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        port = None
        for line in proc.stderr:  # "lesionlite: model ..., serving on http://127.0.0.1:PORT"
            found = re.search(r"serving on http://127\.0\.0\.1:(\d+)", line)
            if found:
                port = int(found.group(1))
                break
        if port is None:
            return {"peak_mb": None, "answers": ["serve did not start"]}
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep its stderr flowing
        data = path.read_bytes()
        answers: list = [None] * uploads
        for _ in range(rounds):
            def one(i: int) -> None:
                try:
                    answers[i] = _post(port, data, path.name)
                except OSError as exc:
                    answers[i] = (0, f"{type(exc).__name__}: {exc}")
            threads = [threading.Thread(target=one, args=(i,)) for i in range(uploads)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        time.sleep(0.5)
        peak, held = status_kb(proc.pid, "VmHWM"), status_kb(proc.pid, "VmRSS")
        return {"peak_mb": peak * 1024 / 1e6 if peak else None, "held_mb": held * 1024 / 1e6 if held else None,
                "answers": sorted({f"{status} {what}" for status, what in answers})}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run(model_args: list[str], serve: bool = True) -> dict:
    """Every figure; ``serve`` needs Flask and waitress ([serve] extra) and Linux's /proc."""
    results: dict = {"classify": {}, "serve": {}, "targets_mb": TARGETS_MB}
    with tempfile.TemporaryDirectory(prefix="lesionlite-membench-") as tmp:
        folder = Path(tmp)
        print(f"making {len(IMAGES)} images of {SIDE}x{SIDE} pixels in {folder} ...", file=sys.stderr, flush=True)
        images = make_images(folder)
        out = folder / "rows.jsonl"
        from lesionlite.edge.bench import sample_image

        cases = {"224 px sample JPEG (baseline)": [sample_image()], **{k: [v] for k, v in images.items()},
                 f"all {len(images)} at once, 2 workers": list(images.values())}
        for name, paths in cases.items():
            print(f"classify: {name} ...", file=sys.stderr, flush=True)
            results["classify"][name] = {"size_mb": round(sum(p.stat().st_size for p in paths) / 1e6, 2),
                                         **classify_peak(paths, out, model_args)}
        if serve:
            for name, path in {"224 px sample JPEG (baseline)": sample_image(), **images}.items():
                print(f"serve: {name} ...", file=sys.stderr, flush=True)
                results["serve"][name] = serve_peak(path, model_args)
    return results


def over_target(results: dict) -> list[str]:
    """The measurements over their target (or that did not measure)."""
    return [f"{command}: {name}" for command in ("classify", "serve")
            for name, r in results[command].items()
            if r.get("peak_mb") is None or r["peak_mb"] > TARGETS_MB[command]]


def _short(answer: str) -> str:
    """An answer, with the refusal of an image too large to decode shortened to what it needed."""
    found = re.search(r"too large to decode in memory: .* need (\d+ MiB)", answer)
    return f"{answer.split(' ')[0]} refused, needs {found.group(1)}" if found and answer[:3].isdigit() else (
        f"refused, needs {found.group(1)}" if found else answer)


def format_report(results: dict) -> str:
    lines = [f"peak RSS, MB (targets: classify {TARGETS_MB['classify']}, serve {TARGETS_MB['serve']} with "
             f"{UPLOADS} concurrent uploads); images {SIDE}x{SIDE}"]

    def mb(v: float | None) -> str:
        return f"{v:6.0f}" if v is not None else "     -"

    lines.append(f"{'classify':<34} {'file MB':>8} {'peak':>6}  result")
    for name, r in results["classify"].items():
        what = "; ".join(dict.fromkeys(map(_short, r["rows"]))) or " ".join(r["stderr"])
        lines.append(f"{name:<34} {r['size_mb']:>8.2f} {mb(r['peak_mb'])}  {what}")
    if results["serve"]:
        lines.append(f"{'serve':<34} {'peak':>8} {'after':>6}  answers")
        for name, r in results["serve"].items():
            lines.append(f"{name:<34} {mb(r['peak_mb']):>8} {mb(r.get('held_mb'))}  "
                         f"{'; '.join(map(_short, r['answers']))}")
    over = over_target(results)
    lines.append("all within their targets" if not over else "OVER TARGET: " + ", ".join(over))
    return "\n".join(lines)
