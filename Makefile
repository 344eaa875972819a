# Every target sets up what it needs first (scripts/bootstrap.sh is a no-op when done).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: help bootstrap release lint test test-unit test-integration molecule bench clean stop-s3

help:
	@echo "make release   build, publish and verify a release on the local platform"
	@echo "make test      lint, unit and handler tests, local release tests, Molecule scenarios"
	@echo "make lint      ansible-lint (production), yamllint, ruff"
	@echo "make bench     package and release figures against their targets (dist/bench.json)"
	@echo "make stop-s3   stop the local SeaweedFS (data is kept under .state/)"

bootstrap:
	@scripts/bootstrap.sh

release: bootstrap
	$(BIN)/ansible-playbook playbooks/release.yml $(ARGS)

lint: bootstrap
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint --profile production
	$(BIN)/ruff check .

test-unit: bootstrap
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

# The local platform's and the sandbox's slow suites side by side (tests/conftest.py);
# the sandbox waits up to 15 min for the local suite's R build rather than compile it too.
test-integration: bootstrap
	R_LAMBDA_WAIT_FOR_R_BUILD=900 $(BIN)/pytest -m slow -n 2 --dist loadgroup $(PYTEST_ARGS)

molecule: bootstrap
	scripts/molecule-all.sh

bench: bootstrap
	$(BIN)/python bench/run.py $(BENCH_ARGS)

test: lint test-unit test-integration molecule

stop-s3: bootstrap
	$(BIN)/ansible-playbook playbooks/local_s3.yml -e local_s3_state=absent

clean:
	rm -rf dist .state/tmp .pytest_cache
