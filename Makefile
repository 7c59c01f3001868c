# jhash — two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
export PYTHONUNBUFFERED := 1

.PHONY: test demo bench bench-quick clean

$(STAMP): pyproject.toml $(wildcard setup.py) $(wildcard csrc/*)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,faiss]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

demo: $(STAMP)
	rm -rf runs/demo
	$(PY) train.py --config configs/synthetic_reid/baseline.py --workdir runs/demo
	$(PY) evaluate.py --workdir runs/demo --compare_untrained --visualize 6 --tradeoff

bench: $(STAMP)
	$(PY) bench/run_all.py

bench-quick: $(STAMP)
	$(PY) bench/run_all.py --quick

clean:
	rm -rf $(VENV) build *.egg-info
