"""Checkpoints that let a run continue after Ctrl-C, a kill or the end of a session (``train --resume``).

At the end of every epoch the run writes ``checkpoint.npz``: every variable of the model being trained
(the quantization-aware twin's ranges too), every variable of its optimizer (Adam's moments, the step
count its learning-rate schedule reads, the moving average with ``--ema``) and a :class:`State` (the
phase, the epochs, the scorer's and early stopping's best so far, the time spent). It is one file,
replaced whole (written aside, then renamed), so a kill at any moment leaves the previous epoch's or
this one's, never a mix. ``checkpoint.json`` repeats the state for people; resuming reads the ``.npz``.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np

from lesionlite.convert.data import DataError
from lesionlite.edge.io import atomic_write_text


@dataclass
class State:
    """Where a run stands at the end of an epoch."""

    epoch: int
    """Epochs of the whole run ended (the phases continue the count; rows of ``history.csv``)."""
    phase: int
    """Index of the phase being trained in the run's phase list (phases of 0 epochs included)."""
    phase_name: str
    phase_epochs: int
    """Epochs of that phase ended."""
    phase_over: bool
    """The phase ran all its epochs, or early stopping ended it."""
    best: float
    """The best validation balanced accuracy of the phase's scorer (model.keras holds that model)."""
    patience: dict
    """Early stopping's ``wait`` and ``best`` in this phase."""
    optimizer_step: int
    """The phase's optimizer's step count, which its learning-rate schedule follows."""
    seconds: float
    """Training time so far, over every sitting."""
    seed: int
    """The random seed of the sitting that wrote it."""


class Checkpointer:
    """Makes the two callbacks of a phase that write ``path`` each epoch: :meth:`capture` goes
    first and copies the variables before any other callback changes them (``SwapEMAWeights``
    puts the moving average into the model for scoring), :meth:`write` goes last and writes them
    with the state once the scorer, the history and early stopping have run."""

    def __init__(self, path: Path, seconds_before: float, seed: int, started: float):
        self.path, self.seconds_before, self.seed, self.started = path, seconds_before, seed, started
        self.variables: tuple[list[np.ndarray], list[np.ndarray]] | None = None

    def callbacks(self, phase: int, name: str, first_epoch: int, planned: int, scorer, patience) -> tuple:
        """The (first, last) callbacks for a phase that starts at run epoch ``first_epoch`` and
        plans ``planned`` epochs; ``scorer`` keeps the best model, ``patience`` stops early (or None)."""
        owner = self

        class Capture(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                owner.variables = ([v.numpy() for v in self.model.weights],
                                   [v.numpy() for v in self.model.optimizer.variables])

        class Write(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                done = epoch + 1 - first_epoch
                state = State(
                    epoch=epoch + 1, phase=phase, phase_name=name, phase_epochs=done,
                    phase_over=bool(self.model.stop_training) or done >= planned, best=float(scorer.best),
                    patience=({"wait": int(patience.wait), "best": _number(patience.best)} if patience else {}),
                    optimizer_step=int(self.model.optimizer.iterations.numpy()),
                    seconds=round(owner.seconds_before + time.time() - owner.started, 1), seed=owner.seed)
                save(owner.path, state, *owner.variables)
                print(f"epoch {epoch + 1}: {owner.path.name} written ({name} {done} of {planned}; "
                      f"lesionlite train --resume {owner.path.parent} continues from here)")

        return Capture(), Write()


def _number(value) -> float | None:
    return None if value is None else float(value)


def save(path: Path, state: State, weights: list[np.ndarray], optimizer: list[np.ndarray]) -> None:
    """Write the checkpoint whole: aside first, then renamed over the old one."""
    arrays = {f"w{i:05d}": w for i, w in enumerate(weights)}
    arrays |= {f"o{i:05d}": v for i, v in enumerate(optimizer)}
    tmp = path.with_name(".tmp-" + path.name)
    with open(tmp, "wb") as fh:
        np.savez(fh, state=np.array(json.dumps(asdict(state))), **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    atomic_write_text(path.with_suffix(".json"), json.dumps(asdict(state), indent=2) + "\n")


def load(path: Path) -> tuple[State, list[np.ndarray], list[np.ndarray]]:
    """The state, model variables and optimizer variables of a checkpoint."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            state = State(**json.loads(str(npz["state"])))
            weights = [npz[k] for k in sorted(k for k in npz.files if k.startswith("w"))]
            optimizer = [npz[k] for k in sorted(k for k in npz.files if k.startswith("o"))]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path} cannot be read ({exc}): the run cannot be resumed from it") from None
    return state, weights, optimizer


def restore(model: keras.Model, weights: list[np.ndarray], optimizer: list[np.ndarray], path: Path) -> None:
    """Put a checkpoint's variables into ``model`` (built and compiled as the phase that wrote them
    did) and its optimizer; refuses a checkpoint that does not fit them."""
    model.optimizer.build(model.trainable_variables)
    for what, variables, values in (("model", model.weights, weights),
                                    ("optimizer", model.optimizer.variables, optimizer)):
        shapes = [tuple(v.shape) for v in variables]
        if shapes != [w.shape for w in values]:
            raise DataError(f"{path} does not fit the {what} of this phase ({len(values)} variables saved, "
                            f"{len(shapes)} here): was the run's code or config changed?")
        for v, w in zip(variables, values):
            v.assign(w)
