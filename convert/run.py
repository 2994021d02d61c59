"""A training run folder, as ``lesionlite train`` writes it and ``train --init/--refit`` and
``convert`` read it."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lesionlite.convert.data import DataError

CONFIG, CALIBRATION, MODEL, SPLIT = "config.json", "calibration.json", "model.keras", "split.csv"
HISTORY = "history.csv"
"""One row per epoch of the whole run, with its validation scores (``lesionlite folds`` reads them)."""
CHECKPOINT = "checkpoint.npz"
"""The state at the end of a run's last whole epoch, which ``train --resume`` continues from."""
FINISHED = (CONFIG, CALIBRATION, MODEL, SPLIT)
"""The files of a finished run: what ``convert`` and ``train --refit`` need from it."""


@dataclass(frozen=True)
class Run:
    """A run folder and its ``config.json``."""

    path: Path
    config: dict

    @classmethod
    def read(cls, path: str | Path) -> "Run":
        """The run in ``path``, finished or not (its ``config.json`` is written first)."""
        path = Path(path)
        if not (path / CONFIG).is_file():
            raise DataError(f"{path} is not a training run: no {CONFIG}")
        return cls(path, json.loads((path / CONFIG).read_text()))

    @classmethod
    def finished(cls, path: str | Path) -> "Run":
        """The run in ``path``; refuses a folder without every file of :data:`FINISHED`."""
        path = Path(path)
        missing = next((name for name in FINISHED if not (path / name).is_file()), None)
        if missing:
            stopped = (f" (it stopped before its end: continue it with lesionlite train --resume {path})"
                       if (path / CONFIG).is_file() else "")
            raise DataError(f"{path} is not a finished training run: no {missing}{stopped}")
        return cls.read(path)

    @classmethod
    def of_model(cls, model_file: str | Path) -> "Run | None":
        """The run a model file was saved in, if its folder holds a ``config.json``."""
        folder = Path(model_file).parent
        return cls.read(folder) if (folder / CONFIG).is_file() else None

    @property
    def calibration(self) -> dict:
        return json.loads((self.path / CALIBRATION).read_text())

    @property
    def model_file(self) -> Path:
        return self.path / MODEL

    @property
    def split_file(self) -> Path:
        return self.path / SPLIT

    def load_model(self):  # -> keras.Model
        import keras

        return keras.models.load_model(self.model_file, compile=False)

    @property
    def commands(self) -> list[str]:
        """The commands that made the run (runs older than ``commands`` kept one ``command``)."""
        return [c for c in self.config.get("commands") or [self.config.get("command", "")] if c]

    @property
    def color_constancy(self) -> str:
        """The run's colour correction (runs from before the option had none)."""
        return self.config.get("color_constancy", "none")

    @property
    def saw_val(self) -> bool:
        """Whether the run trained on the validation split (a refit)."""
        return "val" in self.config.get("trained_on", ["train"])  # runs from before refits trained on train

    @property
    def interrupted_after(self) -> int | None:
        """The epochs after which the run was stopped by hand, or None if its schedule ended."""
        return self.config.get("interrupted_after_epochs")
