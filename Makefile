# Two commands on a fresh machine (each makes the virtual environment it needs):
#   make demo       edge-only environment (.venv-demo); classify the sample images with the shipped model; short benchmark
#   make test       full environment (.venv: training, conversion, camera, web, port, Ray); the whole test suite
# and more:
#   make test-edge  the demo environment plus the edgetest extra; every test that needs only the [edge] extra
#   make pi-check   the Pi's software stack: the edge tier (PI_TESTS) and classify in an arm64 Debian root
#                   filesystem under QEMU (Bookworm; PI_SUITE=trixie: numpy 2 only), with numpy 2.x and numpy<2, and
#                   classify compared at full precision with this host's (.ci/pi-check; needs root)
#   make test-ray   the tests of classify --engine ray;  make bench-scale: its figures against the local engine
PYTHON ?= python3
DEMO_VENV := .venv-demo
VENV := .venv

.PHONY: demo test test-edge test-ray bench-scale pi-check clean

$(DEMO_VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/pip install -q --upgrade pip
	$(DEMO_VENV)/bin/pip install -q -e '.[edge]'
	touch $@

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[edge,camera,serve,train,port,scale,test]'
	touch $@

demo: $(DEMO_VENV)/.installed
	$(DEMO_VENV)/bin/lesionlite classify samples/lesions samples/fullres samples/non-lesion
	$(DEMO_VENV)/bin/lesionlite bench --runs 50 --warmup 5 --no-sweep --reference

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q

# The Ray engine's tests alone (a real local Ray and a 2-node test cluster; about a minute).
test-ray: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q -m ray

# images/s of classify --engine ray against the local engine on one folder, start-up, memory per actor.
bench-scale: $(VENV)/.installed
	$(VENV)/bin/python -m lesionlite.edge.scale.bench

$(DEMO_VENV)/.edgetest: $(DEMO_VENV)/.installed
	$(DEMO_VENV)/bin/pip install -q -e '.[edge,edgetest]'
	touch $@

test-edge: $(DEMO_VENV)/.edgetest
	$(DEMO_VENV)/bin/python -m pytest -q

# The edge tier under emulation (an emulated Pi 5's int8 invoke takes about half a second, a Python
# start a second or two) less the four tests that took 19 of its 30 minutes there (PI_TESTS='-q
# --durations=0' make pi-check), each covered by cheaper ones: the interrupted batches (400 images and a resume, twice: 12 min), the picamera2 CLI
# shooting every frame with 8-view TTA (4 min), the bench sweep of two models and thread counts (2 min;
# emulated timings mean nothing), and evaluate's metadata-file plumbing (1 min).
PI_TESTS ?= -q \
	--deselect tests/test_classify_cli.py::test_interrupted_batch_leaves_no_half_file_and_resumes \
	--deselect tests/test_camera.py::test_picamera2_cli_overlay_shot_colours_and_release \
	--deselect tests/test_bench_cli.py::test_figures_sweep_reference_and_folder_reach_the_json \
	--deselect tests/test_evaluate_cli.py::test_metadata_rows_without_images_are_counted_and_a_split_file_is_checked

# On an aarch64 host .ci/pi-check runs the tier natively; on armv7l it stops (no ai-edge-litert wheel).
pi-check: $(DEMO_VENV)/.installed
	HOST_PYTHON=$(DEMO_VENV)/bin/python PI_TESTS="$(PI_TESTS)" .ci/pi-check

clean:
	rm -rf $(DEMO_VENV) $(VENV) .pytest_cache
