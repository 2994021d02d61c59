"""`lesionlite camera`: replay through the real model and headless display, shots saved and readable,
the quality gate, the picamera2 adapter against a stand-in, drop-out recovery, controls and errors."""
from __future__ import annotations

import enum
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import termios
import time
import types
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from conftest import run_cli, scaled
from lesionlite.edge.camera.controls import QUIT, SHOOT, Keyboard
from lesionlite.edge.camera.display import DisplayError, HeadlessDisplay, make_display
from lesionlite.edge.camera.overlay import DECISION_COLOURS, MIN_HEIGHT
from lesionlite.edge.camera.quality import assess
from lesionlite.edge.camera.sources import CameraAbsent, Picamera2Source, ReplaySource, SourceError
from lesionlite.edge.classifier import Classifier
from lesionlite.cli import main as lesionlite
from lesionlite.edge.preprocess import frame_to_image

ROOT = Path(__file__).resolve().parents[1]
LESIONS = ROOT / "samples/lesions"
SHARP = LESIONS / "ISIC_0026458.jpg"
FULLRES = ROOT / "samples/fullres/ISIC_0024309.jpg"
CAMERA_CMD = [sys.executable, "-m", "lesionlite.cli", "camera"]
STEM = re.compile(r"^\d{8}-\d{6}-\d{3}(-\d+)?$")


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier()  # the shipped default bundle (LESIONLITE_MODEL overrides its path)


def run_main(argv: list[str]) -> int:
    """``lesionlite camera ...`` in-process (for the stand-in camera and captured output)."""
    return lesionlite(["camera", *argv])


def rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def shots(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jpg"))


# --- replay through the real CLI, the real model and the headless display -----------------------

@pytest.fixture(scope="module")
def replay_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path, Path]:
    """One image replayed at 40 fps for 40 frames, a shot every 0.25 s, every 5th frame annotated."""
    tmp = tmp_path_factory.mktemp("replay")
    folder = tmp / "one"
    folder.mkdir()
    shutil.copy(SHARP, folder)
    save = tmp / "shots"
    proc = subprocess.run(CAMERA_CMD + ["--source", f"replay:{folder}", "--display", "headless",
                                        "--save-dir", str(save), "--frames", "40", "--fps", "40",
                                        "--auto-shoot", "0.25", "--frame-every", "5"],
                          cwd=ROOT, capture_output=True, text=True, timeout=scaled(60))
    return proc, folder, save


def test_replay_stops_after_n_frames_and_reports(replay_run) -> None:
    proc, _, save = replay_run
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(r"^40 frames, [\d.]+ fps; \d+ shot\(s\) saved", proc.stdout, re.M), proc.stdout
    assert "display: headless" in proc.stderr and "not a diagnosis" in proc.stderr


def test_shots_are_saved_atomically_and_read_back(replay_run, classifier: Classifier) -> None:
    proc, folder, save = replay_run
    photos = shots(save)
    assert photos, proc.stdout
    assert not list(save.glob(".*.tmp"))
    for photo in photos:
        assert STEM.match(photo.stem)
        record = json.loads(photo.with_suffix(".json").read_text())
        with Image.open(photo) as im:
            assert im.format == "JPEG" and im.size == (224, 224)
        assert record["image"] == photo.name and record["source"] == f"replay:{folder}"
        assert record["decision"] in ("refer", "uncertain", "monitor", "none") and record["reason"]
        assert record["model"]["sha256"] == classifier.bundle.sha256
        assert record["model"]["name"] == classifier.bundle.name
        assert len(record["top"]) == 3 and record["top"][0]["code"] == record["label"]
        assert abs(sum(record["probabilities"].values()) - 1) < 1e-3
        assert datetime.fromisoformat(record["time"]).tzinfo is not None
        assert record["quality"]["ok"] is True
        assert f"shot {photo.name}: {record['name']} ({record['label']})" in proc.stdout
        again = classifier.classify(photo)  # the saved JPEG is the photo that was classified
        assert max(abs(again.probabilities[k] - p) for k, p in record["probabilities"].items()) < 0.08


def test_annotated_frames_show_the_overlay(replay_run) -> None:
    proc, folder, save = replay_run
    frames = sorted((save / ".frames").glob("*.jpg"))
    assert len(frames) >= 8  # frames 5, 10, ... 40 and the final one (a newer one may replace a pending one)
    source = Image.open(SHARP).convert("RGB").resize((MIN_HEIGHT, MIN_HEIGHT), Image.BILINEAR)
    src = np.asarray(source).astype(int)
    shown = np.asarray(Image.open(frames[-1]).convert("RGB")).astype(int)
    assert shown.shape == src.shape
    band, centre = slice(0, 60), (slice(200, 280), slice(150, 330))
    assert np.abs(shown[band] - src[band]).mean() > 40  # the top band is drawn over the frame
    assert np.abs(shown[centre] - src[centre]).mean() < 6  # the lesion itself is left clear
    assert (shown[band].min(axis=2) > 225).sum() > 300  # white text on the darkened band
    record = json.loads(shots(save)[-1].with_suffix(".json").read_text())  # the shot shown last
    colour = np.array(DECISION_COLOURS[record["decision"]])
    assert (np.abs(shown[band] - colour).max(axis=2) < 40).sum() > 300  # decision chip + confidence bar
    last_status = [line for line in proc.stdout.splitlines() if line.startswith("SHOT")][-1]
    assert f"{record['name']} ({record['label']})" in last_status and record["decision"].upper() in last_status


def test_saved_folder_reads_back_with_lesionlite_classify(replay_run, tmp_path: Path) -> None:
    _, _, save = replay_run
    rows_file = tmp_path / "rows.jsonl"
    assert lesionlite(["classify", str(save), "-o", str(rows_file)]) == 0
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()]
    assert sorted(Path(r["path"]).name for r in rows) == [p.name for p in shots(save)]  # not the frames
    for row in rows:  # JPEG re-encoding moves probabilities a little, not more
        saved = json.loads(Path(row["path"]).with_suffix(".json").read_text())["probabilities"]
        assert max(abs(row[f"p_{k}"] - p) for k, p in saved.items()) < 0.08


def test_replay_paces_images_and_loops_a_video(tmp_path: Path) -> None:
    with ReplaySource(LESIONS, fps=50) as source:
        start = time.monotonic()
        frames = [source.read() for _ in range(10)]
        assert time.monotonic() - start >= 0.9 * 9 / 50  # a steady rate, not as fast as possible
    assert all(order == "RGB" and f.shape == (224, 224, 3) for f, order in frames)
    cv2 = pytest.importorskip("cv2")
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (224, 224))
    for path in sorted(LESIONS.glob("*.jpg"))[:3]:
        writer.write(cv2.imread(str(path)))
    writer.release()
    with ReplaySource(video, fps=1000) as source:
        frames = [source.read() for _ in range(7)]  # three frames, played in a loop
    assert all(order == "BGR" and f.shape == (224, 224, 3) for f, order in frames)
    assert np.abs(frames[0][0].astype(int) - frames[3][0]).mean() < 1


def test_replay_skips_an_unreadable_image_and_goes_on(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    good = sorted(LESIONS.glob("*.jpg"))[:2]
    shutil.copy(good[0], tmp_path / "a.jpg")
    (tmp_path / "b.jpg").write_bytes(good[0].read_bytes()[:500])  # truncated
    shutil.copy(good[1], tmp_path / "c.jpg")
    with ReplaySource(tmp_path, fps=1000) as source:
        frames = [source.read()[0] for _ in range(4)]
    expected = [np.asarray(Image.open(p).convert("RGB")) for p in (good[0], good[1])] * 2
    assert all(np.array_equal(f, e) for f, e in zip(frames, expected, strict=True))
    assert capfd.readouterr().err.count("skipping") == 1  # said once, not every loop
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "c.jpg").write_text("not an image")
    with pytest.raises(SourceError, match="no readable image"):
        ReplaySource(tmp_path, fps=1000)  # at once, not after the drop-out retries
    assert run_main(["--source", f"replay:{tmp_path}", "--display", "headless", "--save-dir",
                     str(tmp_path / "shots"), "--frames", "1"]) == 2
    assert "error: replay: no readable image" in capfd.readouterr().err


def test_replay_keeps_decoded_frames_within_its_memory_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    n = len(list(LESIONS.glob("*.jpg")))
    monkeypatch.setattr(ReplaySource, "CACHE_BYTES", 3 * 224 * 224 * 3)  # room for three frames
    with ReplaySource(LESIONS, fps=1000) as source:
        first = [source.read()[0].copy() for _ in range(n)]
        again = [source.read()[0] for _ in range(n)]
        assert source._cached_bytes <= ReplaySource.CACHE_BYTES and len(source._cache) == 3
    assert all(np.array_equal(a, b) for a, b in zip(first, again))  # cached or not, the same frames


# --- the quality gate ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(LESIONS.glob("*.jpg"))[:6] + [FULLRES], ids=lambda p: p.name)
def test_quality_gate_accepts_sharp_and_rejects_blurred(path: Path) -> None:
    im = Image.open(path).convert("RGB")
    assert assess(np.asarray(im)).ok
    assert assess(np.asarray(im.filter(ImageFilter.GaussianBlur(3)))).problem == "too blurry"
    assert assess((np.asarray(im) * 0.1).astype(np.uint8)).problem == "too dark"
    assert assess(np.clip(np.asarray(im) * 3.0, 0, 255).astype(np.uint8)).problem == "too bright"


def test_blurred_frames_show_retake_and_save_nothing(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "blurred"
    folder.mkdir()
    Image.open(SHARP).filter(ImageFilter.GaussianBlur(3)).save(folder / "blurred.png")
    assert run_main(["--source", f"replay:{folder}", "--display", "headless", "--save-dir", str(tmp_path / "s"),
                     "--frames", "12", "--fps", "40", "--auto-shoot", "0.1", "--frame-every", "0"]) == 0
    out = capsys.readouterr().out
    assert "LIVE | retake: too blurry" in out and "retake - too blurry (not saved)" in out
    assert not shots(tmp_path / "s")


def test_frames_too_small_to_measure_are_refused_without_warnings(tmp_path: Path, capsys, recwarn) -> None:
    with np.errstate(all="raise"):  # no NaN sharpness passing the gate
        assert assess(np.zeros((1, 1, 3), np.uint8)).problem == "too small"
        assert assess(np.zeros((20, 400, 3), np.uint8)).problem == "too small"
    folder = tmp_path / "tiny"
    folder.mkdir()
    Image.open(SHARP).resize((1, 1)).save(folder / "dot.png")
    assert run_main(["--source", f"replay:{folder}", "--display", "headless", "--save-dir", str(tmp_path / "s"),
                     "--frames", "3"]) == 2
    err = capsys.readouterr().err
    assert "image too small: 1x1 pixels" in err and "error: replay: no readable image" in err
    assert not shots(tmp_path / "s") and not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_a_video_of_frames_too_small_to_classify_is_shown_with_retake(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    video = tmp_path / "tiny.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (16, 16))
    for _ in range(5):
        writer.write(cv2.resize(cv2.imread(str(SHARP)), (16, 16)))
    writer.release()
    save = tmp_path / "s"
    proc = run_cli("camera", "--source", f"replay:{video}", "--display", "headless", "--save-dir", str(save),
                   "--frames", "5", "--fps", "40", "--frame-every", "1")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "retake: too small" in proc.stdout
    frames = sorted((save / ".frames").glob("*.jpg"))  # drawn, upscaled, with the retake panel
    assert frames and Image.open(frames[-1]).height == MIN_HEIGHT


def test_a_save_dir_that_is_a_file_is_refused_in_one_line(tmp_path: Path) -> None:
    taken = tmp_path / "shots.jpg"
    taken.write_bytes(b"x")
    proc = run_cli("camera", "--source", f"replay:{LESIONS}", "--display", "headless", "--save-dir", str(taken))
    assert proc.returncode == 2 and proc.stderr == (f"lesionlite camera: error: argument --save-dir: '{taken}' is a file, "
                                                    "not a folder (see lesionlite camera --help)\n")


# --- picamera2 through a stand-in with its documented API ----------------------------------------

class FakePicamera2:
    """Records calls; frames are ``FRAME`` (RGB) delivered as picamera2's "RGB888": B,G,R in memory."""

    cameras: list[dict] = [{"Model": "imx708", "Id": "/base/soc/i2c0mux/i2c@1/imx708@1a"}]
    instances: list["FakePicamera2"] = []
    busy = fail_start = False
    frames_before_drop: int | None = None
    frame = rgb(FULLRES)
    still = rgb(FULLRES)

    def __init__(self, camera_num: int = 0):
        if FakePicamera2.busy:
            raise RuntimeError("Camera __init__ sequence did not complete.")
        self.calls: list[tuple] = []
        self.delivered = 0
        FakePicamera2.instances.append(self)

    @staticmethod
    def global_camera_info() -> list[dict]:
        return FakePicamera2.cameras

    def create_preview_configuration(self, main: dict | None = None, **kw) -> dict:
        self.calls.append(("create_preview_configuration", main))
        return {"use_case": "preview", "main": main, "buffer_count": 4}

    def create_still_configuration(self, main: dict | None = None, **kw) -> dict:
        self.calls.append(("create_still_configuration", main))
        return {"use_case": "still", "main": main, "buffer_count": 1}

    def configure(self, config: dict) -> None:
        self.calls.append(("configure", config["use_case"]))

    def start_preview(self, preview: object) -> None:
        self.calls.append(("start_preview", preview))

    def start(self) -> None:
        self.calls.append(("start",))
        if FakePicamera2.fail_start:
            raise RuntimeError("failed to start camera")

    def capture_array(self, name: str = "main") -> np.ndarray:
        limit = FakePicamera2.frames_before_drop  # after it, this and every reopened camera fail
        if limit is not None and (self is not FakePicamera2.instances[0] or self.delivered >= limit):
            raise RuntimeError("Device timeout")
        time.sleep(0.005)
        self.delivered += 1
        return np.ascontiguousarray(FakePicamera2.frame[..., ::-1])

    def switch_mode_and_capture_array(self, config: dict, name: str = "main") -> np.ndarray:
        self.calls.append(("switch_mode_and_capture_array", config["use_case"], name))
        return np.ascontiguousarray(FakePicamera2.still[..., ::-1])

    def set_overlay(self, overlay: np.ndarray) -> None:
        self.calls.append(("set_overlay", overlay.shape, overlay.dtype))

    def stop(self) -> None:
        self.calls.append(("stop",))

    def close(self) -> None:
        self.calls.append(("close",))

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


class Preview(enum.Enum):
    NULL, DRM, QT, QTGL = range(4)


@pytest.fixture()
def fake_picamera2(monkeypatch: pytest.MonkeyPatch) -> type[FakePicamera2]:
    module = types.ModuleType("picamera2")
    module.Picamera2, module.Preview = FakePicamera2, Preview
    monkeypatch.setitem(sys.modules, "picamera2", module)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(FakePicamera2, "instances", [])
    return FakePicamera2


def test_picamera2_adapter_configures_captures_and_releases(fake_picamera2, monkeypatch) -> None:
    colour = np.array([200, 30, 60], np.uint8)  # an RGB colour whose channel order is unmistakable
    monkeypatch.setattr(fake_picamera2, "frame", np.broadcast_to(colour, (480, 640, 3)))
    with Picamera2Source() as source:
        cam = fake_picamera2.instances[0]
        assert cam.calls[:4] == [("create_still_configuration", {"format": "RGB888"}),
                                 ("create_preview_configuration", {"size": (640, 480), "format": "RGB888"}),
                                 ("configure", "preview"), ("start",)]
        frame, order = source.read()
        assert order == "BGR" and tuple(frame[0, 0]) == (60, 30, 200)  # B,G,R in memory
        assert frame_to_image(frame, order).getpixel((5, 5)) == tuple(colour)
        still, order = source.capture_still()
        assert order == "BGR" and still.shape == (450, 600, 3)
        assert ("switch_mode_and_capture_array", "still", "main") in cam.calls
        assert "start_preview" not in cam.names()
    assert cam.names()[-2:] == ["stop", "close"]
    source.close()  # twice is harmless
    assert cam.names().count("close") == 1


def test_picamera2_released_when_start_fails(fake_picamera2, monkeypatch) -> None:
    monkeypatch.setattr(fake_picamera2, "fail_start", True)
    with pytest.raises(SourceError, match="failed to start"):
        Picamera2Source()
    assert fake_picamera2.instances[0].names()[-2:] == ["stop", "close"]


def test_picamera2_busy_absent_and_missing_are_one_line_errors(fake_picamera2, monkeypatch) -> None:
    monkeypatch.setattr(fake_picamera2, "busy", True)
    with pytest.raises(SourceError, match="another program"):
        Picamera2Source()
    monkeypatch.setattr(fake_picamera2, "cameras", [])
    with pytest.raises(CameraAbsent, match="no Raspberry Pi camera"):
        Picamera2Source()
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails
    with pytest.raises(CameraAbsent, match="apt install python3-picamera2"):
        Picamera2Source()


def test_picamera2_cli_overlay_shot_colours_and_release(fake_picamera2, tmp_path: Path) -> None:
    rc = run_main(["--source", "picamera2", "--display", "auto", "--save-dir", str(tmp_path),
                   "--frames", "30", "--auto-shoot", "0.05", "--tta"])
    assert rc == 0
    cam = fake_picamera2.instances[0]
    assert ("start_preview", Preview.DRM) in cam.calls  # console preview, overlay drawn on it
    overlays = [c for c in cam.calls if c[0] == "set_overlay"]
    assert overlays and overlays[0][1:] == ((450, 600, 4), np.uint8)
    assert cam.names()[-2:] == ["stop", "close"]
    photo = shots(tmp_path)[0]
    saved = np.asarray(Image.open(photo).convert("RGB")).astype(int)
    assert np.abs(saved - fake_picamera2.still).mean() < 3  # colours right, not swapped
    record = json.loads(photo.with_suffix(".json").read_text())
    assert record["source"] == "picamera2" and record["tta"] is True


def test_dropout_is_retried_then_exits_cleanly_keeping_shots(fake_picamera2, monkeypatch, tmp_path: Path,
                                                             capsys) -> None:
    monkeypatch.setattr(fake_picamera2, "frames_before_drop", 40)
    rc = run_main(["--source", "picamera2", "--display", "headless", "--save-dir", str(tmp_path),
                   "--frame-every", "0", "--auto-shoot", "0.05"])
    err = capsys.readouterr().err
    assert rc == 1
    assert [f"retrying ({i}/3)" in err for i in (1, 2, 3)] == [True] * 3
    assert "error: the camera stopped delivering frames (Device timeout); gave up after 3 retries" in err
    assert "Traceback" not in err
    assert len(fake_picamera2.instances) == 4  # opened once, reopened three times
    assert all(cam.names()[-1] == "close" for cam in fake_picamera2.instances)
    photos = shots(tmp_path)
    assert photos and all(json.loads(p.with_suffix(".json").read_text())["decision"] for p in photos)


# --- controls, displays and errors ---------------------------------------------------------------

def test_keyboard_reads_a_tty_without_blocking_and_restores_it() -> None:
    master, slave = os.openpty()
    with os.fdopen(slave, "r") as stream:
        before = termios.tcgetattr(slave)
        keyboard = Keyboard(stream)
        assert keyboard.active and keyboard.poll() == []
        os.write(master, b" ")
        assert keyboard.poll() == [SHOOT]
        os.write(master, b"\x1b[A")  # an arrow key is not Esc
        assert keyboard.poll() == []
        os.write(master, b"q")
        assert keyboard.poll() == [QUIT]
        keyboard.close()
        assert termios.tcgetattr(slave) == before
    os.close(master)


def test_window_falls_back_to_headless_and_overlay_needs_the_pi_preview(monkeypatch, capsys) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with ReplaySource(LESIONS) as source:
        with make_display("window", source, None, 0) as display:
            assert isinstance(display, HeadlessDisplay)
        assert "falling back to --display headless" in capsys.readouterr().err
        with pytest.raises(DisplayError, match="picamera2"):
            make_display("overlay", source, None, 0)


@pytest.mark.parametrize("argv, message", [
    (["--source", "replay:/no/such/folder"], "error: replay: no such file or folder"),
    pytest.param(["--source", "opencv:9"], "error: no camera at OpenCV index 9",
                 marks=pytest.mark.skipif(importlib.util.find_spec("cv2") is None,
                                          reason="needs OpenCV (pip install '.[camera]')")),
    (["--source", "webcam"], "error: unknown source 'webcam'"),
    (["--model", "/no/such/bundle"], "error: model not found"),
    # --gpio-pin without gpiozero: tests/test_gpio_mock.py
])
def test_errors_are_one_line_messages(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    assert run_main(argv + ["--display", "headless", "--save-dir", str(tmp_path), "--frames", "1"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("error: ")]) == 1


@pytest.mark.parametrize("argv, message", [
    (["--fps", "0"], "argument --fps: expected 0.1 to 1,000 frames per second, got 0"),
    (["--fps", "nan"], "argument --fps: expected 0.1 to 1,000 frames per second, got nan"),
    (["--auto-shoot", "-1"], "argument --auto-shoot: expected 0.01 to 86,400 seconds, got -1"),
    (["--frame-every", "-1"], "argument --frame-every: expected 0 to 1,000,000, got -1"),
])
def test_out_of_range_numbers_are_refused_where_they_are_parsed(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as stopped:  # before any camera, model or folder is touched
        run_main(["--source", "replay:/no/such/folder", "--model", "/no/such/bundle", *argv])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == f"lesionlite camera: error: {message} (see lesionlite camera --help)\n"
