"""What triggers a shot or quits: the keyboard (a TTY, read without blocking), a GPIO button
(gpiozero) and an auto-shoot timer. Each input's ``poll()`` returns the actions since the last poll."""
from __future__ import annotations

import os
import re
import select
import sys
import termios
import threading
import time
import tty
from typing import Any, Protocol, TextIO

from lesionlite.edge.errors import LesionliteError

SHOOT, QUIT = "shoot", "quit"
ESCAPE_SEQUENCE = re.compile(r"\x1b(\[[0-9;]*[A-Za-z~]|O.)")
"""Arrow and function keys: ignored, so only a lone Esc quits."""


class ControlError(LesionliteError, RuntimeError):
    """An input the user asked for cannot be used (e.g. the GPIO button)."""


def key_action(key: str) -> str | None:
    """Space/Enter shoots; q or Esc quits."""
    if key in (" ", "\r", "\n"):
        return SHOOT
    if key in ("q", "Q", "\x1b"):
        return QUIT
    return None


class Input(Protocol):
    def poll(self) -> list[str]: ...

    def close(self) -> None: ...


class Keyboard:
    """Keys from a terminal in cbreak mode (Ctrl-C still interrupts); inert when not a TTY."""

    def __init__(self, stream: TextIO | None = None):
        self._fd: int | None = None
        self._saved: Any = None
        try:
            fd = (stream or sys.stdin).fileno()
        except (AttributeError, OSError, ValueError):
            return
        if os.isatty(fd):
            self._saved = termios.tcgetattr(fd)
            tty.setcbreak(fd)
            self._fd = fd

    @property
    def active(self) -> bool:
        return self._fd is not None

    def poll(self) -> list[str]:
        if self._fd is None or not select.select([self._fd], [], [], 0)[0]:
            return []
        keys = ESCAPE_SEQUENCE.sub("", os.read(self._fd, 64).decode(errors="ignore"))
        return [a for a in map(key_action, keys) if a]

    def close(self) -> None:
        if self._fd is not None:
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            self._fd = None


class GpioButton:
    """A push button between a GPIO pin (BCM numbering) and ground."""

    def __init__(self, pin: int):
        try:
            from gpiozero import Button
        except ImportError:
            raise ControlError("--gpio-pin needs gpiozero: sudo apt install python3-gpiozero") from None
        self._pressed = threading.Event()
        try:
            self._button = Button(pin, bounce_time=0.05)
        except Exception as exc:  # gpiozero raises pin-factory and pin errors of many types
            raise ControlError(f"cannot use GPIO{pin} for the button: {exc}") from None
        self._button.when_pressed = self._pressed.set

    def poll(self) -> list[str]:
        if self._pressed.is_set():
            self._pressed.clear()
            return [SHOOT]
        return []

    def close(self) -> None:
        self._button.close()


class AutoShoot:
    """A shot every ``seconds`` (above zero: ``--auto-shoot`` is checked where it is parsed), the
    first one ``seconds`` after start."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._next = time.monotonic() + seconds

    def poll(self) -> list[str]:
        now = time.monotonic()
        if now < self._next:
            return []
        self._next = now + self.seconds
        return [SHOOT]

    def close(self) -> None:
        pass


class Controls:
    """All inputs together; a context manager that restores the terminal and frees the pin."""

    def __init__(self, gpio_pin: int | None = None, auto_shoot: float | None = None, keyboard: bool = True):
        self.inputs: list[Input] = []
        try:
            if keyboard:
                self.inputs.append(Keyboard())
            if gpio_pin is not None:
                self.inputs.append(GpioButton(gpio_pin))
            if auto_shoot is not None:
                self.inputs.append(AutoShoot(auto_shoot))
        except BaseException:
            self.close()
            raise

    def poll(self) -> list[str]:
        return [action for i in self.inputs for action in i.poll()]

    def close(self) -> None:
        for i in self.inputs:
            i.close()
        self.inputs = []

    def __enter__(self) -> "Controls":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
