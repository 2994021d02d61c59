# Two commands on a fresh machine:
#   make demo   edge-only environment; classify the sample images with the shipped model; short benchmark
#   make test   full environment (training, conversion, camera, web, port); the whole test suite
#   make test-edge  the demo environment plus pytest; every test that needs only the [edge] extra
#   make test-ray   the tests of classify --engine ray;  make bench-scale: its figures against the local engine
PYTHON ?= python3
DEMO_VENV := .venv-demo
VENV := .venv

.PHONY: demo test test-edge test-ray bench-scale clean

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

clean:
	rm -rf $(DEMO_VENV) $(VENV) .pytest_cache
