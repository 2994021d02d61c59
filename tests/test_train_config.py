"""The training recipe's one source of truth: ``lesionlite train``'s options come from
:class:`TrainConfig`'s fields, and ``--print-config`` shows the result (no TensorFlow needed)."""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import fields

import pytest

from conftest import ROOT, run_cli
from lesionlite.cli import build_parser
from lesionlite.training.config import RECIPE, TrainConfig, flag


def parse(*argv: str):
    return build_parser().parse_args(["train", *argv])


def test_print_config_shows_the_effective_config_and_exits_0(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("train", "--data", str(tmp_path), "--out", str(out), "--arch", "efficientnet-lite0",
                   "--augment", "robust", "--fine-tune-epochs", "3", "--init", "a.keras", "b.keras", "--print-config")
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)  # the whole of stdout: no warning mixed in
    expected = {f.name: getattr(TrainConfig(data=[str(tmp_path)], out=str(out)), f.name)
                for f in fields(TrainConfig) if f.name != "command"}
    assert printed == {**expected, "arch": "efficientnet-lite0", "augmentation": "robust", "fine_tune_epochs": 3,
                       "init": ["a.keras", "b.keras"], "input_size": [224, 224]}  # the architecture's size
    assert not out.exists()  # printed, not trained

    proc = run_cli("train", "--data", "d", "--out", "o", "--input-size", "24", "32", "--train-batchnorm",
                   "--print-config")
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed["input_size"] == [24, 32] and printed["train_batchnorm"] is True


@pytest.mark.parametrize("args, message", [
    (["--input-size", "24", "32", "40"], "argument --input-size: takes one or two numbers, got 3"),
    (["--batch", "0"], "argument --batch: must be positive, got 0"),
    (["--augment", "wild"], "argument --augment: invalid choice: 'wild'"),
    (["--fold", "3/2"], "argument --fold: expected I/K with K >= 2 and I from 1 to K, like 2/5, got '3/2'"),
    (["--fold", "1/1"], "argument --fold: expected I/K"),
])
def test_bad_options_are_refused_in_one_line_before_any_work(args, message):
    proc = run_cli("train", "--data", "d", "--out", "o", *args, "--print-config")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


def test_data_and_out_are_required_unless_resuming_and_resuming_takes_the_runs_own_config(tmp_path):
    for args, message in ((["--out", "o"], "required: --data (or --resume RUN)"),
                          ([], "required: --data, --out (or --resume RUN)"),
                          (["--resume", "r", "--augment", "robust", "--batch", "4"],
                           "--resume continues r with its own options: leave out --batch, --augment")):
        proc = run_cli("train", *args, "--print-config")
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    run = tmp_path / "run"
    run.mkdir()
    recorded = {**TrainConfig(data=["d"], out="elsewhere", epochs=3).effective(), "input_size": [48, 64],
                "commands": ["lesionlite train ..."], "counts": {"train": 1}}
    (run / "config.json").write_text(json.dumps(recorded))
    proc = run_cli("train", "--resume", str(run), "--print-config")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {**TrainConfig(data=["d"], out=str(run), epochs=3).effective(),
                                       "input_size": [48, 64]}  # where it is now, not where it was made
    (run / "config.json").write_text(json.dumps({**recorded, "data": "d"}))  # a run from before several roots
    assert json.loads(run_cli("train", "--resume", str(run), "--print-config").stdout)["data"] == ["d"]
    proc = run_cli("train", "--resume", str(tmp_path), "--print-config")
    assert proc.returncode == 2 and f"{tmp_path} is not a training run: no config.json" in proc.stderr


def test_options_are_the_fields_with_the_fields_defaults():
    assert TrainConfig.from_args(parse("--data", "d", "--out", "o")) == TrainConfig(data=["d"], out="o")
    assert TrainConfig.from_args(parse("--data", "d", "--data", "e", "--out", "o")).data == ["d", "e"]
    usage = parse("--data", "d", "--out", "o").command_parser.format_usage()
    for f in fields(TrainConfig):
        assert (f"[{flag(f.name)}" in usage or f" {flag(f.name)} " in usage) is (f.name not in ("workers", "command"))
    assert flag("augmentation") == "--augment" and flag("fine_tune_lr") == "--fine-tune-lr"
    cfg = TrainConfig.from_args(parse("--data", "d", "--out", "o", "--input-size", "48", "--init", "m.keras"))
    assert cfg.input_size == (48, 48) and cfg.size == (48, 48) and cfg.init == ["m.keras"]
    assert TrainConfig(data="d", out="o").init is not TrainConfig(data="d", out="o").init


def test_the_recipe_a_refit_must_match():
    assert set(RECIPE) == {
        "arch", "alpha", "input_size", "color_constancy", "augmentation", "aspect_jitter", "imbalance",
        "class_weight_power", "label_smoothing", "mixup", "ema", "epochs", "fine_tune_epochs", "fine_tune_fraction",
        "lr", "fine_tune_lr", "qat_epochs", "qat_lr", "batch", "train_batchnorm", "refer_sensitivity",
        "confidence_floor"}


def readme_train_commands() -> list[list[str]]:
    """Every whole ``lesionlite train`` command of the READMEs (optional parts in [brackets] left out)."""
    commands = []
    readmes = [ROOT / "README.md", ROOT / "training" / "README.md", *sorted((ROOT / "models").glob("**/README.md"))]
    for readme in readmes:
        for line in readme.read_text().replace("\\\n", " ").splitlines():
            start = line.find("lesionlite train ")
            if start >= 0 and "--data" in line and "--out" in line:
                command = re.sub(r"\[[^\]]*\]", "", line[start:].split("`")[0])
                commands.append(shlex.split(command, comments=True)[2:])
    return commands


def test_the_readme_commands_still_parse():
    commands = readme_train_commands()
    assert len(commands) >= 10
    for argv in commands:
        assert TrainConfig.from_args(parse(*argv)).data == [v for k, v in zip(argv, argv[1:]) if k == "--data"]
