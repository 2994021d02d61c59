"""`lesionlite classify --engine ray` through the real CLI, on a real local Ray instance and on a
2-node Ray test cluster (no mocks). Select them with `-m ray`; without Ray installed (the edge-only
venv) they skip."""
from __future__ import annotations

import csv
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="needs Ray: pip install -e '.[scale]'")


def broken_folder(folder: Path, lesion_images, fullres_images) -> Path:
    (folder / "sub").mkdir(parents=True)
    for img in lesion_images[:4]:
        shutil.copy(img, folder / img.name)
    shutil.copy(fullres_images[0], folder / "sub" / fullres_images[0].name)
    shutil.copy(lesion_images[4], folder / os.fsdecode(b"caf\xe9.jpg"))  # a name that is not UTF-8
    data = lesion_images[5].read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("not an image at all")
    return folder


def test_engine_options_without_engine_ray_are_refused(lesion_images):
    proc = run_cli("classify", str(lesion_images[0]), "--actors", "2")
    assert proc.returncode == 2 and proc.stderr == "error: --actors needs --engine ray\n"


@pytest.mark.skipif(HAS_RAY, reason="checks the message given where Ray is not installed")
def test_engine_ray_without_ray_says_how_to_install_it(lesion_images, tmp_path):
    proc = run_cli("classify", str(lesion_images[0]), "--engine", "ray", "-o", str(tmp_path / "o.csv"))
    assert proc.returncode == 2 and "pip install 'lesionlite[scale]'" in proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "o.csv.partial").exists()


@needs_ray
def test_engine_ray_needs_an_output_file(lesion_images):
    proc = run_cli("classify", str(lesion_images[0]), "--engine", "ray")
    assert proc.returncode == 2 and proc.stderr.startswith("error: --engine ray writes its rows to a file")


@pytest.mark.parametrize("cpus", [0.5, 1, 2, 3, 4, 8, 64])
@pytest.mark.parametrize("actors", [None, 1, 2, 3, 16])
def test_actors_and_a_task_always_fit_together(cpus, actors):
    from lesionlite.edge.scale.engine import plan

    for smallest in sorted({min(cpus, c) for c in (0.5, 1, 2, cpus)}):
        p = plan(cpus, smallest, actors)
        assert p.actors == (actors or max(1, int(cpus // 2)))
        assert p.actors * p.actor_cpus <= cpus / 2 + 1e-9  # the other half is the tasks'
        assert p.actor_cpus + 2 * p.task_cpus <= smallest + 1e-9  # an actor and two tasks on the smallest node
        assert p.actor_cpus > 0 and p.task_cpus > 0


@pytest.mark.ray
@needs_ray
def test_same_rows_as_the_local_engine_and_resume_classifies_only_what_is_missing(
        tmp_path, lesion_images, fullres_images, parrot):
    a = broken_folder(tmp_path / "a", lesion_images, fullres_images)
    shutil.copy(parrot, a / parrot.name)  # declined by the scope gate
    b = tmp_path / "b"
    b.mkdir()
    for img in lesion_images[6:10]:
        shutil.copy(img, b / img.name)
    # the local engine's rows, then Ray's (a local instance on this machine's cores), from the same folder
    local = run_cli("classify", "a", "-o", "local.csv", cwd=tmp_path)
    ray = run_cli("classify", "a", "-o", "ray.csv", "--engine", "ray", cwd=tmp_path, timeout=240)
    assert (ray.returncode, local.returncode) == (1, 1), ray.stderr  # the broken files' rows failed
    assert (tmp_path / "ray.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    rows = list(csv.DictReader((tmp_path / "ray.csv").open(encoding="utf-8", errors="surrogateescape")))
    assert len(rows) == 10 and sum(bool(r["error"]) for r in rows) == 3
    # quiet: the summary, the declined count and the disclaimer, as the local engine's; Ray's own lines
    # are in the log the summary names
    log = tmp_path / "ray.csv.ray.log"
    assert ray.stderr.splitlines()[0] == (f"10 images, 3 failed -> ray.csv (Parquet shards: {tmp_path}/ray.csv.parquet; "
                                          f"Ray log: {log})")
    assert ray.stderr.splitlines()[1:] == local.stderr.splitlines()[1:]
    assert ray.stderr.splitlines()[1].startswith("1 image(s) out of scope: not dermoscopic images")
    assert len(ray.stderr.splitlines()) == 3 and "Started a local Ray instance" in log.read_text()
    shards = list((tmp_path / "ray.csv.parquet").glob("run-*/*.parquet"))
    assert shards
    import pyarrow.parquet as pq

    table = pq.read_table(shards[0])
    assert table.num_rows == 10 and {"path", "label", "p_mel", "error", "top", "record"} <= set(table.column_names)

    # A run over a and b that died after writing a's shards and before its CSV: the state it leaves
    # is the shards and a .partial with the header only. The local engine, given the same rows in its
    # .partial, shows what --resume must give.
    header = (tmp_path / "ray.csv").read_bytes().split(b"\n")[0] + b"\n"
    (tmp_path / "local.csv").unlink()
    (tmp_path / "ray.csv").rename(tmp_path / "local.csv.partial")
    (tmp_path / "ray.csv.partial").write_bytes(header)
    local = run_cli("classify", "a", "b", "-o", "local.csv", "--resume", cwd=tmp_path)
    ray = run_cli("classify", "a", "b", "-o", "ray.csv", "--engine", "ray", "--resume", cwd=tmp_path, timeout=240)
    assert (ray.returncode, local.returncode) == (1, 1), ray.stderr
    assert (tmp_path / "ray.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    assert ": 7 of 14 images to classify" in log.read_text()  # b's 4, and a's 3 failed rows tried again
    assert not (tmp_path / "ray.csv.partial").exists()


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("ray")
    """A 2-node Ray test cluster on this machine: a head with no CPU for work (the driver's node) and
    one 1-CPU worker node, so all the work runs on the node a test kills. Node deaths are noticed in
    about a second."""
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "_system_config": {
        "health_check_initial_delay_ms": 0, "health_check_period_ms": 500, "health_check_failure_threshold": 3}})
    c.worker = c.add_node(num_cpus=1)
    c.wait_for_nodes()
    yield c
    c.shutdown()


@pytest.mark.ray
@needs_ray
def test_a_node_lost_mid_run_is_retried_by_ray(cluster, tmp_path, lesion_images):
    folder = tmp_path / "archive"
    folder.mkdir()
    for i in range(30):
        for img in lesion_images:
            shutil.copy(img, folder / f"{i:02d}-{img.name}")
    log = tmp_path / "out.csv.ray.log"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "lesionlite.cli", "classify", "archive", "-o", "out.csv",
                             "--engine", "ray", "--address", cluster.address], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (log.exists() and "images to classify" in log.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.2)
        time.sleep(1.0)
        assert proc.poll() is None, "the run ended before the node could be killed"
        cluster.remove_node(cluster.worker, allow_graceful=False)  # every actor and task of the run was there
        cluster.worker = cluster.add_node(num_cpus=1)  # Ray reschedules the lost work on the new node
        _, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    local = run_cli("classify", "archive", "-o", "local.csv", cwd=tmp_path)
    assert local.returncode == 0
    assert (tmp_path / "out.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    assert err.startswith(f"{len(lesion_images) * 30} images, 0 failed -> out.csv")


@pytest.mark.ray
@needs_ray
def test_a_failed_ray_run_is_one_line_naming_the_log(cluster, tmp_path, lesion_images):
    (tmp_path / "out.csv.parquet").write_text("a file where the shards' folder goes")
    proc = run_cli("classify", str(lesion_images[0]), "-o", "out.csv", "--engine", "ray",
                   "--address", cluster.address, cwd=tmp_path, timeout=180)
    assert proc.returncode == 2
    first = proc.stderr.splitlines()[0]
    assert first.startswith("error: the Ray run failed while classifying (NotADirectoryError")
    assert first.endswith(f"full log: {tmp_path}/out.csv.ray.log") and "Traceback" not in proc.stderr
    assert "Traceback" in (tmp_path / "out.csv.ray.log").read_text()
    assert (tmp_path / "out.csv.partial").exists() and "--resume" in proc.stderr
