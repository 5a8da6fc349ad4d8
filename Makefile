# Set-up and checks. `make test` and `make demo` install everything they need into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.saeval-installed

.PHONY: install test lint demo bench clean gpu-wheels gpu-check gpu-check-cpu-proof

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: here it is the CPU wheel on disk, on a GPU machine the CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,demo]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check saeval tests benchmarks
	$(BIN)/ruff format --check saeval tests benchmarks
	$(BIN)/mypy

test: lint
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/pytest -q -n 2 --dist loadfile

demo: install
	$(BIN)/saeval demo

bench: install
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

# The GPU check (README "GPU check"). gpu-wheels runs here: the wheels the GPU machine's image
# lacks, for Python $(PY), into $(WHEELS) (at most 40 MiB). gpu-check runs there, without our
# .venv: the wheels go offline into a fresh temporary folder, then $(PYTHON) runs the check.
WHEELS ?= .gpu-wheels
PY ?= 3.12
DEVICE ?= cuda:0
BUDGET_S ?= 450
PROOF ?= .gpu-proof

gpu-wheels: install
	$(BIN)/python -m benchmarks.gpu_check_wheels --dest $(WHEELS) --python-version $(PY)

gpu-check:
	@ls $(WHEELS)/*.whl >/dev/null 2>&1 || \
		{ echo "error: no wheels in $(WHEELS): run make gpu-wheels first (and carry it)"; exit 1; }
	site=$$(mktemp -d /tmp/saeval-gpu-site.XXXXXX) && \
	$(PYTHON) -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
		--target $$site $(WHEELS)/*.whl && \
	PYTHONPATH=$$site:$(CURDIR) PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
		$(PYTHON) -m benchmarks.gpu_check --device $(DEVICE) --budget-s $(BUDGET_S); \
	status=$$?; rm -rf $$site; exit $$status

# The same path on this CPU: Python 3.11 wheels, and a fresh venv standing in for the image.
gpu-check-cpu-proof:
	$(MAKE) gpu-wheels PY=3.11 WHEELS=$(PROOF)/wheels
	rm -rf $(PROOF)/image && $(PYTHON) -m venv $(PROOF)/image
	$(PROOF)/image/bin/pip install --quiet torch==2.13.0
	$(PROOF)/image/bin/pip install --quiet -r $(PROOF)/wheels/image-requirements.txt
	$(MAKE) gpu-check DEVICE=cpu PYTHON=$(CURDIR)/$(PROOF)/image/bin/python WHEELS=$(PROOF)/wheels
