"""Out-of-range options of every edge command: one line, exit 2, before any work (issue 21, point 8)."""
from __future__ import annotations

import os

import pytest

from conftest import run_cli

LIMIT = max(4, 2 * (os.cpu_count() or 1))


@pytest.mark.parametrize("argv,message", [
    (["serve", "--max-upload-mb", "nan"], "argument --max-upload-mb: expected 0.1 to 64 MB, got nan"),
    (["serve", "--max-upload-mb", "inf"], "argument --max-upload-mb: expected 0.1 to 64 MB, got inf"),
    (["serve", "--max-upload-mb", "1e-9"], "argument --max-upload-mb: expected 0.1 to 64 MB, got 1e-9"),
    (["camera", "--fps", "1e-300"], "argument --fps: expected 0.1 to 1,000 frames per second, got 1e-300"),
    (["camera", "--fps", "inf"], "argument --fps: expected 0.1 to 1,000 frames per second, got inf"),
    (["camera", "--auto-shoot", "nan"], "argument --auto-shoot: expected 0.01 to 86,400 seconds, got nan"),
    (["camera", "--frame-every", "-1"], "argument --frame-every: expected 0 to 1,000,000, got -1"),
    (["classify", "x.jpg", "--threads", "10000"], f"argument --threads: at most {LIMIT} "),
    (["classify", "x.jpg", "--workers", "10000"], f"argument --workers: at most {LIMIT} "),
    (["evaluate", "x.csv", "--workers", "10000"], f"argument --workers: at most {LIMIT} "),
    (["bench", "--sweep", "1", "10000"], f"argument --sweep: at most {LIMIT} "),
    (["serve", "--threads", "10000"], f"argument --threads: at most {LIMIT} "),
])
def test_an_option_out_of_range_is_one_line_before_any_work(argv, message):
    proc = run_cli(*argv, timeout=60)
    assert proc.returncode == 2 and not proc.stdout
    command = f"lesionlite {argv[0]}"
    assert proc.stderr.startswith(f"{command}: error: {message}"), proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_the_largest_thread_count_allowed_is_accepted(lesion_images):
    proc = run_cli("classify", str(lesion_images[0]), "--threads", str(LIMIT), "--workers", str(LIMIT))
    assert proc.returncode == 0, proc.stderr


def test_a_json_output_never_replaces_an_image_or_a_file_that_is_not_json(tmp_path, lesion_images):
    import shutil

    photo = tmp_path / "photo.jpg"
    shutil.copy(lesion_images[0], photo)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    for argv, name in ((["bench", "--no-sweep", "--runs", "1", "--json", str(photo)], photo),
                       (["bench", "--no-sweep", "--runs", "1", "--json", str(notes)], notes),
                       (["classify", str(lesion_images[1]), "-o", str(photo), "--format", "csv"], photo)):
        proc = run_cli(*argv, timeout=120)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "is an image file" in proc.stderr or "is not a JSON file" in proc.stderr
    assert photo.read_bytes() == lesion_images[0].read_bytes() and notes.read_text() == "my notes\n"
    earlier = tmp_path / "bench.json"
    earlier.write_text('{"old": 1}')  # its own earlier figures are replaced
    assert run_cli("bench", "--no-sweep", "--runs", "2", "--warmup", "0", "--json", str(earlier)).returncode == 0
    assert "invoke_ms" in earlier.read_text()
