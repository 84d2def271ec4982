# The two commands a user needs (README): `make serve` starts the backend, `make test` runs the tests.
# Both create the virtual environment on first use from the pinned lock file.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
PORT ?= 9090

.PHONY: serve worker test test-fast install

$(STAMP): requirements.lock requirements-test.txt requirements-tools.txt
	$(PYTHON) -m venv $(VENV)
	# first the installers themselves: Python's bundled pip and setuptools have known vulnerabilities
	$(VENV)/bin/pip install -q --upgrade -r requirements-tools.txt
	# --no-deps: the lock is the complete set; it keeps label-studio-ml's obsolete pins out (requirements.txt)
	$(VENV)/bin/pip install -q --no-deps -r requirements.lock
	$(VENV)/bin/pip install -q -r requirements-test.txt
	# put the repository on the venv's path, so `label-studio-ml init` copies of my_ml_backend.py import the package
	echo "$(CURDIR)" > $$($(VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/uie_backend_repo.pth
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	PORT=$(PORT) $(VENV)/bin/gunicorn --config gunicorn.conf.py _wsgi:app

# A worker for replicas that share a Redis queue (REDIS_URL; README "Several replicas"): it trains, and between
# training jobs it pre-annotates projects (training first: RQ takes the queues in this order).
worker: $(STAMP)
	@test -n "$(REDIS_URL)" || { echo "set REDIS_URL, e.g. REDIS_URL=redis://localhost:6379/0 make worker" >&2; exit 2; }
	$(VENV)/bin/rq worker --url "$(REDIS_URL)" uie-training uie-preannotation

test: $(STAMP)
	$(VENV)/bin/python -m pytest

test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -m "not slow"
