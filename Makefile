# Two commands on a fresh machine: `make demo` (the demo end to end) and `make test` (the test suite).
# Both create .venv and install what they need; nothing has to be installed by hand.
VENV := .venv
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: venv demo test lint clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(VENV)/bin/pip install --quiet -e '.[test,slurm]'
	touch $(STAMP)

venv: $(STAMP)

# Horovod (train.backend: horovod) is built from source with two fixes for torch 2.14 (about 4 minutes);
# the test suite needs it, the demo does not.
HOROVOD := $(VENV)/.horovod
$(HOROVOD): $(STAMP) scripts/install-horovod.sh
	scripts/install-horovod.sh $(VENV)
	touch $(HOROVOD)

# The demo is config/demo.yaml (data, short training) layered on config.yaml (the production defaults).
DEMO_CONFIG := config.yaml config/demo.yaml

demo: venv
	snakemake --profile profiles/local --configfile $(DEMO_CONFIG)
	s2ecosg summary $(DEMO_CONFIG)

# Two workers; the tests of each shared workflow run go to one worker (tests/conftest.py), so each run is made once.
test: venv $(HOROVOD)
	pytest -n 2 --dist loadgroup

lint: venv
	snakemake --lint --configfile $(DEMO_CONFIG)

clean:
	rm -rf results logs benchmarks .snakemake
