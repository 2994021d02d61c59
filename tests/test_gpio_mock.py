"""The camera's shutter button (``--gpio-pin``) against gpiozero's own mock pin factory, the library's
documented test double: a simulated press takes a shot from a replay source, the pin is freed on
exit, and a pin or a gpiozero that cannot be used is a one-line error. On a Pi (and under
``make pi-check``) this is Debian's python3-gpiozero; elsewhere gpiozero from PyPI."""
from __future__ import annotations

import json
import shutil
import sys
import threading
from pathlib import Path

import pytest

from lesionlite.cli import main as lesionlite
from lesionlite.edge.camera import controls
from lesionlite.edge.camera.controls import SHOOT, ControlError, Controls, GpioButton

gpiozero = pytest.importorskip("gpiozero", reason="needs gpiozero (pip install -e '.[edgetest]')")
from gpiozero import Button, Device  # noqa: E402
from gpiozero.pins.mock import MockFactory  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARP = ROOT / "samples/lesions/ISIC_0026458.jpg"
PIN = 17


@pytest.fixture()
def pins(monkeypatch: pytest.MonkeyPatch) -> MockFactory:
    """gpiozero's mock pins, for every device made during the test (as GPIOZERO_PIN_FACTORY=mock)."""
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    factory = MockFactory()
    monkeypatch.setattr(Device, "pin_factory", factory)
    yield factory
    factory.reset()


def press(pin) -> None:
    """The button pulls the pin (pulled up) to ground, then lets go."""
    pin.drive_low()
    pin.drive_high()


def test_a_press_is_one_shot_at_the_next_poll_and_close_frees_the_pin(pins: MockFactory) -> None:
    pin = pins.pin(PIN)
    button = GpioButton(PIN)
    assert pin.pull == "up"  # a button between the pin and ground
    assert button.poll() == []
    press(pin)
    assert button.poll() == [SHOOT]  # a press while the loop was busy is not lost
    assert button.poll() == []  # and counts once
    button.close()
    press(pin)  # a closed button no longer listens
    assert button.poll() == []
    Button(PIN).close()  # the pin is free again: no GPIOPinInUse


def test_controls_free_the_pin_even_when_another_input_is_refused(pins: MockFactory,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self, seconds: float) -> None:  # an input made after the button fails (the CLI checks the
        raise ControlError("refused")          # interval itself, so a real AutoShoot no longer can)

    monkeypatch.setattr(controls.AutoShoot, "__init__", refuse)
    with pytest.raises(ControlError, match="refused"):
        Controls(gpio_pin=PIN, auto_shoot=1, keyboard=False)
    Button(PIN).close()  # the button made before the refusal was closed


def test_a_press_on_the_pin_takes_a_shot_from_the_camera(pins: MockFactory, monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path, capsys) -> None:
    folder = tmp_path / "replay"
    folder.mkdir()
    shutil.copy(SHARP, folder)
    save = tmp_path / "shots"
    pin = pins.pin(PIN)
    listening = threading.Event()  # set once the camera has made its button (after source and display)
    made = GpioButton.__init__

    def make(self: GpioButton, number: int) -> None:
        made(self, number)
        listening.set()

    monkeypatch.setattr(GpioButton, "__init__", make)

    def press_when_listening() -> None:
        if listening.wait(timeout=300):
            press(pin)

    presser = threading.Thread(target=press_when_listening, daemon=True)
    presser.start()
    rc = lesionlite(["camera", "--source", f"replay:{folder}", "--display", "headless", "--save-dir", str(save),
                     "--frames", "15", "--fps", "20", "--frame-every", "0", "--gpio-pin", str(PIN)])
    presser.join(timeout=5)
    assert listening.is_set()
    out = capsys.readouterr().out
    assert rc == 0, out
    photos = sorted(save.glob("*.jpg"))
    assert len(photos) == 1, out  # one press, one shot; nothing else shoots here
    record = json.loads(photos[0].with_suffix(".json").read_text())
    assert record["source"] == f"replay:{folder}" and record["quality"]["ok"] is True
    assert f"shot {photos[0].name}: {record['name']} ({record['label']})" in out
    assert "1 shot(s) saved" in out
    assert pin.when_changed is None  # the camera closed the button on its way out
    Button(PIN).close()


def test_a_pin_that_does_not_exist_is_a_one_line_error(pins: MockFactory, tmp_path: Path, capsys) -> None:
    rc = lesionlite(["camera", "--source", f"replay:{SHARP.parent}", "--display", "headless",
                     "--save-dir", str(tmp_path), "--frames", "1", "--gpio-pin", "99"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error: ")] == [
        line for line in err.splitlines() if line.startswith("error: cannot use GPIO99 for the button: ")]
    assert "error: cannot use GPIO99 for the button: " in err


def test_without_gpiozero_the_pin_option_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path, capsys) -> None:
    monkeypatch.setitem(sys.modules, "gpiozero", None)  # as where it is not installed: import fails
    rc = lesionlite(["camera", "--source", f"replay:{SHARP.parent}", "--display", "headless",
                     "--save-dir", str(tmp_path), "--frames", "1", "--gpio-pin", str(PIN)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "error: --gpio-pin needs gpiozero: sudo apt install python3-gpiozero" in err
    assert len([line for line in err.splitlines() if line.startswith("error: ")]) == 1
