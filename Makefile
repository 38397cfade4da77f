# make demo: set up .venv and run the quickstart sweep on this machine.
# make test: set up .venv and run the whole test suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Boards with older onnxruntime releases (tests/test_old_runtimes.py): each a virtualenv whose python an SSH
# test board runs the agent with. 1.16 is the oldest onnxruntime orch supports (orchestrator/runtimes.py).
BOARDS := .venv-boards
OLD_RUNTIMES := $(BOARDS)/onnxruntime-1.16/.installed $(BOARDS)/onnxruntime-1.18/.installed

.PHONY: demo test bench lint venv boards clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and alone: it is the CPU build on this machine's disk.
	$(BIN)/pip install --quiet torch==2.13.0
	# ray: the build executor's tests start a real Ray cluster (tests/test_build_executors.py).
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,ray]'
	touch $(STAMP)

venv: $(STAMP)

$(BOARDS)/onnxruntime-1.16/.installed:
	$(PYTHON) -m venv $(BOARDS)/onnxruntime-1.16
	$(BOARDS)/onnxruntime-1.16/bin/pip install --quiet onnxruntime==1.16.3 numpy==1.24.4
	touch $@

$(BOARDS)/onnxruntime-1.18/.installed:
	$(PYTHON) -m venv $(BOARDS)/onnxruntime-1.18
	# Pillow and no OpenCV: the board the detection pipeline's Pillow path is tested on (tests/test_pipeline.py).
	$(BOARDS)/onnxruntime-1.18/bin/pip install --quiet onnxruntime==1.18.1 numpy==1.26.4 pillow==10.4.0
	touch $@

boards: $(OLD_RUNTIMES)

# The results and the dashboards (dashboards/out/index.html) are written even when some results were invalid; make
# then exits with the sweep's code (3: invalid results).
demo: $(STAMP)
	$(BIN)/orch sweep recipes/quickstart.yaml --devices local; status=$$?; \
	$(BIN)/orch results --sweep last && $(BIN)/orch dashboard && exit $$status

test: $(STAMP) $(OLD_RUNTIMES)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks

lint: $(STAMP)
	$(BIN)/ruff check orchestrator agent tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(BOARDS) artifacts frames results.db results.db-wal results.db-shm dashboards/out
