"""`lesionlite classify` through the real CLI: rows, broken files, exit status, atomic output, resume."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from pathlib import Path

from conftest import ROOT, interruptible, run_cli, scaled

COLUMNS = ["path", "label", "confidence", "decision", "p_akiec", "p_bcc", "p_bkl", "p_df", "p_mel",
           "p_nv", "p_vasc", "error"]


@pytest.fixture()
def mixed_folder(tmp_path, lesion_images, fullres_images):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for img in lesion_images[:4]:
        shutil.copy(img, folder / img.name)
    shutil.copy(fullres_images[0], folder / "sub" / fullres_images[0].name)
    data = lesion_images[5].read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("not an image at all")
    (folder / "ignored.txt").write_text("folders are scanned for image files only")
    return folder


def test_csv_rows_for_good_and_broken_files(mixed_folder, tmp_path):
    out = tmp_path / "out.csv"
    proc = run_cli("classify", str(mixed_folder), "--output", str(out), "--workers", "2")
    assert proc.returncode == 1, proc.stderr  # some rows failed
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0])[: len(COLUMNS)] == COLUMNS
    by_name = {os.path.basename(r["path"]): r for r in rows}
    assert len(rows) == 8 and "ignored.txt" not in by_name
    assert "truncated" in by_name["truncated.jpg"]["error"]
    assert "empty" in by_name["zero.jpg"]["error"]
    assert "not a readable image" in by_name["notes.png"]["error"]
    good = [r for r in rows if not r["error"]]
    assert len(good) == 5
    for r in good:
        probs = [float(r[c]) for c in COLUMNS[4:11]]
        assert sum(probs) == pytest.approx(1.0, abs=2e-3)
        assert r["decision"] in ("refer", "uncertain", "monitor")
        assert float(r["confidence"]) == pytest.approx(max(probs), abs=1e-3)
    assert "not a diagnosis" in proc.stderr
    assert not (tmp_path / "out.csv.partial").exists()


def test_jsonl_and_table_and_clean_exit(lesion_images, tmp_path):
    out = tmp_path / "out.jsonl"
    proc = run_cli("classify", *map(str, lesion_images[:3]), "-o", str(out), "--top-k", "2")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"] for r in rows] == [str(p) for p in lesion_images[:3]]
    assert all(len(r["top"]) == 2 and r["error"] == "" for r in rows)
    table = run_cli("classify", str(lesion_images[0]))
    assert table.returncode == 0 and lesion_images[0].name in table.stdout
    assert "not a diagnosis" in table.stderr


def test_missing_path_is_a_one_line_error_before_any_work(tmp_path, lesion_images):
    proc = run_cli("classify", str(lesion_images[0]), str(tmp_path / "nothing-here"), "-o", str(tmp_path / "o.csv"))
    assert proc.returncode == 2 and not (tmp_path / "o.csv").exists() and not (tmp_path / "o.csv.partial").exists()
    assert proc.stderr.strip() == f"error: {tmp_path / 'nothing-here'}: no such file or folder"
    proc = run_cli("classify", str(tmp_path))  # an empty folder
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no image files" in proc.stderr


def _slow_batch(tmp_path: Path, lesion_images: list[Path], n: int, **popen) -> tuple[subprocess.Popen, Path, Path]:
    """``classify`` of ``n`` copies of the samples with TTA on one thread, started in the background: a
    batch slow enough to be caught mid-way. Returns the process, its output and its partial file."""
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(n):
        shutil.copy(lesion_images[i % len(lesion_images)], folder / f"img_{i:04d}.jpg")
    out = tmp_path / "rows.csv"
    proc = subprocess.Popen([sys.executable, "-m", "lesionlite.cli", "classify", str(folder), "-o", str(out),
                             "--workers", "1", "--threads", "1", "--tta"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    return proc, out, tmp_path / "rows.csv.partial"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_batch_leaves_no_half_file_and_resumes(sig, tmp_path, lesion_images):
    proc, out, partial = _slow_batch(tmp_path, lesion_images, 400, preexec_fn=interruptible)
    folder = tmp_path / "many"
    deadline = time.time() + 120
    while time.time() < deadline and (not partial.exists() or partial.read_text().count("\n") < 30):
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert not out.exists(), "the final output must not appear before the batch is complete"
    done_before = partial.read_text().count("\n") - 1
    assert 0 < done_before < 400
    if sig == signal.SIGINT:
        assert "--resume" in err and "Traceback" not in err
    resumed = run_cli("classify", str(folder), "-o", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    rows = list(csv.DictReader(out.open()))
    paths = [r["path"] for r in rows]
    assert len(paths) == 400 and len(set(paths)) == 400
    assert all((r["label"] or r["decision"] == "out-of-scope") and not r["error"] for r in rows)
    assert not partial.exists()


def test_resume_keeps_each_file_once_and_retries_the_rows_that_failed(tmp_path, lesion_images):
    copied = tmp_path / "late.jpg"
    copied.write_bytes(lesion_images[0].read_bytes()[:300])  # half copied when the first run read it
    out = tmp_path / "rows.jsonl"
    first = run_cli("classify", "late.jpg", str(lesion_images[0]), "-o", str(out), cwd=tmp_path)
    assert first.returncode == 1 and "2 images, 1 failed" in first.stderr
    shutil.copy(out, tmp_path / "rows.jsonl.partial")  # as if a later run was cut after its first rows
    copied.write_bytes(lesion_images[0].read_bytes())  # the copy has finished since
    spelled_otherwise = os.path.relpath(lesion_images[0], tmp_path)  # ../../.., the same file
    resumed = run_cli("classify", "late.jpg", spelled_otherwise, str(lesion_images[1]), "-o", str(out),
                      "--resume", cwd=tmp_path)
    assert resumed.returncode == 0 and "3 images, 0 failed" in resumed.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"] for r in rows] == [str(lesion_images[0]), "late.jpg", str(lesion_images[1])]
    assert not any(r["error"] for r in rows)


def test_resume_keeps_a_failed_row_of_a_file_it_is_not_given_again(tmp_path, lesion_images):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"")
    out = tmp_path / "rows.csv"
    assert run_cli("classify", str(lesion_images[0]), str(broken), "-o", str(out)).returncode == 1
    more = run_cli("classify", str(lesion_images[1]), "-o", str(out), "--resume")
    assert more.returncode == 1 and "3 images, 1 failed" in more.stderr  # the output still holds a failure
    rows = {r["path"]: r for r in csv.DictReader(out.open())}
    assert rows[str(broken)]["error"] and set(rows) == {str(lesion_images[0]), str(broken), str(lesion_images[1])}


def test_resume_never_rewrites_the_rows_it_keeps_in_place(tmp_path, lesion_images):
    out = tmp_path / "rows.csv"
    assert run_cli("classify", *map(str, lesion_images[:2]), "-o", str(out)).returncode == 0
    partial = tmp_path / "rows.csv.partial"
    out.rename(partial)  # an interrupted run's rows
    before = partial.read_bytes()
    os.link(partial, tmp_path / "same-file")  # sees any rewrite of that file in place
    resumed = run_cli("classify", *map(str, lesion_images[:3]), "-o", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "same-file").read_bytes() == before  # a kill at any moment keeps the old rows
    assert len(list(csv.DictReader(out.open()))) == 3


def test_a_rerun_without_resume_keeps_an_interrupted_runs_rows(tmp_path, lesion_images):
    out = tmp_path / "rows.csv"
    partial = tmp_path / "rows.csv.partial"
    assert run_cli("classify", str(lesion_images[0]), "-o", str(partial), "--format", "csv").returncode == 0
    before = partial.read_bytes()
    proc = run_cli("classify", *map(str, lesion_images[:3]), "-o", str(out))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--resume" in proc.stderr
    assert partial.read_bytes() == before and not out.exists()


def test_output_through_a_link_writes_its_target_and_a_device_is_refused(tmp_path, lesion_images):
    target = tmp_path / "target.csv"
    target.write_text("")  # an empty file (touch): replaced; a file with other content would be refused
    link = tmp_path / "link.csv"
    link.symlink_to(target.name)
    assert run_cli("classify", str(lesion_images[0]), "-o", str(link)).returncode == 0
    assert link.is_symlink() and target.read_text().startswith('"path","label"')
    proc = run_cli("classify", str(lesion_images[0]), "-o", "/dev/null", "--format", "csv")
    assert proc.returncode == 2 and "not a regular file" in proc.stderr and Path("/dev/null").is_char_device()


def test_a_folder_scan_names_what_it_leaves_out(tmp_path, lesion_images):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(lesion_images[0], elsewhere)
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(lesion_images[1], folder)
    (folder / "linked").symlink_to(elsewhere)  # may lead anywhere: named, not followed
    (folder / "phone.HEIC").write_bytes(b"not decoded here")
    out = tmp_path / "rows.csv"
    proc = run_cli("classify", str(folder), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert [os.path.basename(r["path"]) for r in csv.DictReader(out.open())] == [lesion_images[1].name]
    assert f"note: 1 linked folder(s) not followed ({folder / 'linked'})" in proc.stderr
    assert f"note: 1 file(s) in {folder} of a kind lesionlite cannot decode (.heic)" in proc.stderr
    named = run_cli("classify", str(folder), str(folder / "linked"), "-o", str(out))
    assert named.returncode == 0 and len(list(csv.DictReader(out.open()))) == 2
    empty = run_cli("classify", "")
    assert empty.returncode == 2 and empty.stderr.strip() == "error: '': an empty path is not a file or folder"


def test_a_name_with_a_newline_and_damaged_exif_keep_the_table_one_line_a_row(tmp_path, lesion_images):
    from PIL import Image

    odd = tmp_path / "new\nline.jpg"
    shutil.copy(lesion_images[0], odd)
    im = Image.open(lesion_images[0])
    exif = im.getexif()
    exif[0x010E] = "x" * 100  # a description whose data the block below cuts off
    damaged = tmp_path / "damaged-exif.jpg"
    im.save(damaged, exif=exif.tobytes()[:40])
    proc = run_cli("classify", str(odd), str(damaged))
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 3 and "new\\nline.jpg" in proc.stdout
    assert "Warning" not in proc.stderr


@pytest.mark.parametrize("args,message", [
    (["--workers", "0"], "argument --workers: must be positive, got 0"),
    (["--top-k", "x"], "argument --top-k: expected a positive int, got 'x'"),
    (["--threads", "0"], "argument --threads: must be positive, got 0"),
])
def test_bad_numbers_are_refused_by_the_parser(args, message, lesion_images):
    proc = run_cli("classify", str(lesion_images[0]), *args)
    assert proc.returncode == 2 and proc.stderr == f"lesionlite classify: error: {message} (see lesionlite classify --help)\n"
    assert not proc.stdout


def test_an_unknown_option_is_reported_by_the_command_it_was_given_to(lesion_images):
    for argv, command in ((["classify", str(lesion_images[0]), "--bogus"], "lesionlite classify"),
                          (["--bogus", "classify", str(lesion_images[0])], "lesionlite")):
        proc = run_cli(*argv)
        assert proc.returncode == 2 and not proc.stdout
        assert proc.stderr == f"{command}: error: unrecognized arguments: --bogus (see {command} --help)\n"


@pytest.mark.parametrize("args,message", [
    (["-o", "/nonexistent-folder/out.csv"], "no such folder"),
    (["-o", "out.txt"], "cannot tell the format"),
    (["--format", "csv"], "--format csv needs --output FILE"),
    (["-o", "."], "'.' is a folder; name a file in it"),
    (["--labels", "/nonexistent/labels.txt"], "cannot read labels file"),
    (["--model", "/nonexistent/bundle"], "model not found"),
])
def test_bad_arguments_give_one_line_errors(args, message, lesion_images, tmp_path):
    proc = run_cli("classify", str(lesion_images[0]), *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr.strip().splitlines()[-1] and "Traceback" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if "error:" in line]) == 1, proc.stderr


def test_output_piped_into_head_ends_quietly():
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # each row written at once
    proc = subprocess.Popen([sys.executable, "-m", "lesionlite.cli", "classify", "samples/lesions"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("path")
    proc.stdout.close()  # as `| head -n 1` does: the rows still to come have no reader
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 141 and err.strip() == ""  # no "error: Broken pipe", no traceback


def test_a_file_name_that_is_not_utf8_is_written_and_resumed(tmp_path, lesion_images):
    folder = tmp_path / "card"
    folder.mkdir()
    odd = folder / os.fsdecode(b"lesion-\xff.jpg")  # as copied from a camera's SD card
    shutil.copy(lesion_images[0], odd)
    shutil.copy(lesion_images[1], folder / "plain.jpg")
    out = tmp_path / "rows.csv"
    first = run_cli("classify", str(folder), "-o", str(out))
    assert first.returncode == 0, first.stderr
    assert os.fsencode(odd) in out.read_bytes()  # the name, byte for byte
    again = run_cli("classify", str(folder), "-o", str(out), "--resume")
    assert again.returncode == 0 and "2 images, 0 failed" in again.stderr
    assert out.read_bytes().count(b"\n") == 3  # header and two rows: nothing classified twice
    table = subprocess.run([sys.executable, "-m", "lesionlite.cli", "classify", str(folder)], cwd=ROOT, capture_output=True,
                           env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"})
    assert table.returncode == 0 and b"Traceback" not in table.stderr and b"lesion-\xff.jpg" in table.stdout


@pytest.mark.parametrize("existing,fmt", [("hello\n", "csv"), ("path,label\nx.jpg,mel\n", "csv"),
                                          ('{"path": "x.jpg", "error": ""}\n', "jsonl"), ("hello\n", "jsonl")])
def test_resume_refuses_a_file_it_did_not_write(existing, fmt, tmp_path, lesion_images):
    out = tmp_path / f"rows.{fmt}"
    out.write_text(existing)
    proc = run_cli("classify", str(lesion_images[0]), "-o", str(out), "--resume")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith(f"error: cannot resume: {out} is not a lesionlite")
    assert out.read_text() == existing and not (tmp_path / f"rows.{fmt}.partial").exists()


def test_resume_classifies_again_a_photo_replaced_under_the_same_name(tmp_path, lesion_images):
    folder = tmp_path / "photos"
    folder.mkdir()
    nevus, melanoma = lesion_images[0], lesion_images[1]  # nv 0.88 monitor / mel 0.96 refer
    shutil.copy(nevus, folder / "IMG_0001.jpg")
    shutil.copy(lesion_images[2], folder / "IMG_0002.jpg")
    out = tmp_path / "rows.csv"
    assert run_cli("classify", str(folder), "-o", str(out)).returncode == 0
    before = {r["path"]: r for r in csv.DictReader(out.open())}
    assert before[str(folder / "IMG_0001.jpg")]["decision"] == "monitor"
    shutil.copy(melanoma, folder / "IMG_0001.jpg")  # the camera's numbering started again
    resumed = run_cli("classify", str(folder), "-o", str(out), "--resume")
    assert resumed.returncode == 0 and "2 images, 0 failed" in resumed.stderr
    after = {r["path"]: r for r in csv.DictReader(out.open())}
    fresh = run_cli("classify", str(melanoma), "-o", str(tmp_path / "fresh.csv"))
    expected = next(csv.DictReader((tmp_path / "fresh.csv").open()))
    replaced = after[str(folder / "IMG_0001.jpg")]
    assert fresh.returncode == 0 and (replaced["label"], replaced["decision"]) == ("mel", "refer")
    assert {k: replaced[k] for k in COLUMNS[1:]} == {k: expected[k] for k in COLUMNS[1:]}
    assert after[str(folder / "IMG_0002.jpg")] == before[str(folder / "IMG_0002.jpg")]  # kept as it was


def test_resume_sees_a_replacement_of_the_same_size_and_time(tmp_path, lesion_images):
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    for name, src in (("a.bmp", lesion_images[0]), ("b.bmp", lesion_images[1])):
        Image.open(src).save(folder / name)  # 224 x 224 BMPs: the same size in bytes
    a, b = folder / "a.bmp", folder / "b.bmp"
    assert a.stat().st_size == b.stat().st_size
    out = tmp_path / "rows.jsonl"
    assert run_cli("classify", str(a), "-o", str(out)).returncode == 0
    first = json.loads(out.read_text())
    st = a.stat()
    a.write_bytes(b.read_bytes())  # as `cp -p` would: another photo, the same size and times
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (a.stat().st_size, a.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert run_cli("classify", str(a), "-o", str(out), "--resume").returncode == 0
    second = json.loads(out.read_text())
    assert first["label"] == "nv" and second["label"] == "mel" and second["file_id"] != first["file_id"]


def test_resume_from_another_folder_keeps_each_row_once(tmp_path, lesion_images):
    work = tmp_path / "work"
    (work / "photos").mkdir(parents=True)
    for img in lesion_images[:3]:
        shutil.copy(img, work / "photos" / img.name)
    out = tmp_path / "rows.csv"
    first = run_cli("classify", "photos", "-o", str(out), cwd=work)
    assert first.returncode == 0, first.stderr
    rows = list(csv.DictReader(out.open()))
    assert [r["path"] for r in rows] == [f"photos/{p.name}" for p in lesion_images[:3]]
    text = out.read_text()
    marked = text.replace(rows[0]["confidence"], "0.1234", 1)  # kept rows stay as they were
    out.write_text(marked)
    shutil.copy(lesion_images[3], work / "photos" / lesion_images[3].name)
    resumed = run_cli("classify", "work/photos", "-o", "rows.csv", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0 and "4 images, 0 failed" in resumed.stderr, resumed.stderr
    again = list(csv.DictReader(out.open()))
    assert [r["path"] for r in again] == [*(r["path"] for r in rows), f"work/photos/{lesion_images[3].name}"]
    assert again[0]["confidence"] == "0.1234"
    assert all(r["real_path"] == str(tmp_path / "work" / r["path"].removeprefix("work/")) and r["file_id"]
               for r in again)


def test_special_files_get_a_row_that_names_them_and_never_hang(tmp_path, lesion_images):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(lesion_images[0], folder / "good.jpg")
    os.mkfifo(folder / "y.jpg")  # nothing will ever write to it
    (folder / "loop.jpg").symlink_to("loop.jpg")
    (folder / "dangling.jpg").symlink_to("gone.jpg")
    (folder / "zero.jpg").symlink_to("/dev/zero")
    (folder / "urandom.png").symlink_to("/dev/urandom")
    out = tmp_path / "rows.csv"
    proc = run_cli("classify", str(folder), "-o", str(out), timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    errors = {os.path.basename(r["path"]): r["error"] for r in csv.DictReader(out.open())}
    assert errors == {
        "dangling.jpg": "broken link: its target gone.jpg does not exist",
        "good.jpg": "",
        "loop.jpg": "a link that leads back to itself (symbolic link loop)",
        "urandom.png": "not a regular file but a character device: not read",
        "y.jpg": "not a regular file but a FIFO (named pipe): not read",
        "zero.jpg": "not a regular file but a character device: not read",
    }
    named = run_cli("classify", str(folder / "y.jpg"), str(folder / "dangling.jpg"), timeout=120)
    assert named.returncode == 1 and "FIFO" in named.stdout and "broken link" in named.stdout


def test_a_carriage_return_or_newline_in_a_name_is_quoted_and_resumed(tmp_path, lesion_images):
    folder = tmp_path / "photos"
    folder.mkdir()
    names = ["car\rriage.jpg", "new\nline.jpg", "plain.jpg"]
    for name, src in zip(names, lesion_images):
        shutil.copy(src, folder / name)
    for fmt in ("csv", "jsonl"):
        out = tmp_path / f"rows.{fmt}"
        assert run_cli("classify", str(folder), "-o", str(out)).returncode == 0
        again = run_cli("classify", str(folder), "-o", str(out), "--resume")
        assert again.returncode == 0 and "3 images, 0 failed" in again.stderr, again.stderr
        if fmt == "csv":
            with out.open(newline="") as fh:  # as the csv module documents reading
                rows = list(csv.DictReader(fh))
            assert out.read_bytes().count(b"\r") == 2  # in path and real_path, nowhere else
        else:
            rows = [json.loads(line) for line in out.read_text().split("\n")[:-1]]
        assert sorted(os.path.basename(r["path"]) for r in rows) == sorted(names)
        assert all(r["decision"] and not r["error"] for r in rows)


def test_a_second_process_on_the_same_output_is_refused_at_once(tmp_path, lesion_images):
    first, out, partial = _slow_batch(tmp_path, lesion_images, 30)
    folder = tmp_path / "many"
    try:
        deadline = time.time() + scaled(120)
        while time.time() < deadline and (not partial.exists() or partial.read_text().count("\n") < 10):
            time.sleep(0.05)
        first.send_signal(signal.SIGSTOP)  # held mid-way, lock and all, however fast or slow this machine is
        for extra in ([], ["--resume"]):
            t = time.time()
            second = run_cli("classify", str(folder), "-o", str(out), *extra)
            assert second.returncode == 2 and time.time() - t < scaled(30)
            assert second.stderr == (f"error: {out}: another lesionlite process (pid {first.pid}) is writing it; "
                                     "wait for it to finish or name another --output\n")
            assert first.poll() is None and not out.exists(), "the first run must still be the only writer"
        first.send_signal(signal.SIGCONT)
        _, err = first.communicate(timeout=scaled(300))
    finally:
        first.kill()
    assert first.returncode == 0, err
    assert "30 images, 0 failed" in err
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 30 and len({r["path"] for r in rows}) == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many", "rows.csv"]  # no lock file left


def test_output_never_replaces_an_input_image_or_a_file_it_did_not_write(tmp_path, lesion_images):
    victim = tmp_path / "victim.jpg"
    shutil.copy(lesion_images[0], victim)
    photo = victim.read_bytes()
    for args in (["-o", str(victim), "--format", "csv"], ["-o", "victim.jpg", "--format", "jsonl", "--resume"]):
        proc = run_cli("classify", str(victim), *args, cwd=tmp_path)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "is an image file: name another file to write" in proc.stderr
    odd = tmp_path / "photo.dat"  # an image whose name does not say so, classified and named as output
    shutil.copy(lesion_images[1], odd)
    proc = run_cli("classify", str(odd), "-o", str(odd), "--format", "csv")
    assert proc.returncode == 2 and proc.stderr == f"error: --output {odd} is one of the images to classify; name another file\n"
    notes = tmp_path / "notes.csv"
    notes.write_text("date,weight\n2026-01-01,70\n")
    proc = run_cli("classify", str(victim), "-o", str(notes))
    assert proc.returncode == 2 and proc.stderr == (f"error: cannot overwrite {notes}: it is not a lesionlite CSV "
                                                    "output for this model's labels; name another --output or delete it\n")
    assert victim.read_bytes() == photo and odd.read_bytes() == lesion_images[1].read_bytes()
    assert notes.read_text() == "date,weight\n2026-01-01,70\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.csv", "photo.dat", "victim.jpg"]
    rerun = tmp_path / "rows.csv"  # its own earlier output is replaced, as a rerun should
    for _ in range(2):
        assert run_cli("classify", str(victim), "-o", str(rerun)).returncode == 0
    assert len(list(csv.DictReader(rerun.open()))) == 1


def _png(path: Path, side: int, depth: int, colour: int, channels: int) -> None:
    """A ``side`` x ``side`` PNG written a row at a time (no image of that size in this process):
    dark at the top, light at the bottom."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    squeeze = zlib.compressobj(9)
    with path.open("wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, depth, colour, 0, 0, 0)))
        data = b""
        for y in range(side):
            level = 40 + 160 * y // side
            sample = bytes([level, 0]) if depth == 16 else bytes([level])
            data += squeeze.compress(b"\x00" + sample * channels * side)
        fh.write(chunk(b"IDAT", data + squeeze.flush()) + chunk(b"IEND", b""))


def test_a_50_megapixel_image_is_classified_within_memory_or_refused_saying_why(tmp_path):
    _png(tmp_path / "grey16.png", 7070, 16, 0, 1)  # 95 MiB decoded: within the decoding memory
    _png(tmp_path / "rgb.png", 7070, 8, 2, 3)  # 191 MiB as Pillow holds RGB: over it
    out = tmp_path / "rows.jsonl"
    proc = run_cli("classify", str(tmp_path / "grey16.png"), str(tmp_path / "rgb.png"), "-o", str(out))
    assert proc.returncode == 1, proc.stderr
    grey, rgb = (json.loads(line) for line in out.read_text().splitlines())
    assert grey["error"] == "" and grey["decision"]  # read and answered (a flat grey frame is out of scope)
    assert rgb["error"] == ("image too large to decode in memory: 7070x7070 pixels of mode RGB (PNG) need 198 MiB "
                            "(limit 110 MiB); save it smaller or as a baseline JPEG")


@pytest.mark.parametrize("delay", [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.45, 0.6])
def test_ctrl_c_at_any_moment_from_the_first_import_exits_130_without_a_traceback(delay, tmp_path, lesion_images):
    folder = tmp_path / "photos"
    folder.mkdir()
    for img in lesion_images[:6]:
        shutil.copy(img, folder / img.name)
    out = tmp_path / "rows.csv"
    # the child says when Python has started (its own start-up is not lesionlite's to guard), then runs
    # `lesionlite classify` as `python -m lesionlite.cli` does
    start = ("import os, runpy, sys; os.write(1, b'R'); "
             f"sys.argv = ['lesionlite', 'classify', {str(folder)!r}, '-o', {str(out)!r}, '--tta']; "
             "runpy.run_module('lesionlite.cli', run_name='__main__', alter_sys=True)")
    proc = subprocess.Popen([sys.executable, "-c", start], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=interruptible)
    assert proc.stdout.read(1) == b"R"
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    err = err.decode()
    # 0: it had finished; -SIGINT (130 to a shell): it had finished, and the signal came as Python shut down
    assert proc.returncode in (0, 130, -signal.SIGINT), err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    if proc.returncode != 130:
        assert len(list(csv.DictReader(out.open()))) == 6
    if proc.returncode == 130:
        assert err.strip().splitlines()[-1] in ("interrupted", f"interrupted: {out}.partial keeps the rows so far; "
                                                "rerun with --resume to continue")
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name != "rows.csv.lock")
    assert leftovers in (["photos"], ["photos", "rows.csv"], ["photos", "rows.csv.partial"]), leftovers
    if (tmp_path / "rows.csv.lock").exists():  # cut while taking it: left, but no one's lock (the kernel let go)
        from lesionlite.edge.io import OutputLock

        OutputLock(tmp_path / "rows.csv.lock").release()


def test_ctrl_c_while_numpy_loads_its_c_extension_exits_130_without_a_traceback(tmp_path, lesion_images):
    # Ctrl-C exactly where the emulated Trixie run once caught it: numpy's C extension importing datetime
    # turns the KeyboardInterrupt into an ImportError. The signal is sent from an import hook at that moment.
    hook = ("import os, signal, sys\n"
            "class Interrupt:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'datetime' and 'numpy' in sys.modules:\n"
            "            sys.meta_path.remove(self)\n"
            "            os.kill(os.getpid(), signal.SIGINT)\n"
            "sys.meta_path.insert(0, Interrupt())\n")
    assert "datetime" not in subprocess.run([sys.executable, "-c", "import sys; print(*sys.modules)"],
                                            capture_output=True, text=True).stdout.split()  # numpy is first to
    start = hook + (f"sys.argv = ['lesionlite', 'classify', {str(lesion_images[0])!r}]\n"
                    "import runpy; runpy.run_module('lesionlite.cli', run_name='__main__', alter_sys=True)")
    proc = subprocess.run([sys.executable, "-c", start], cwd=tmp_path, capture_output=True, text=True,
                          timeout=scaled(120), preexec_fn=interruptible)
    assert (proc.returncode, proc.stderr, proc.stdout) == (130, "interrupted\n", "")
