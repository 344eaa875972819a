# Every target sets up what it needs first (scripts/bootstrap.sh is a no-op when done).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: lock help bootstrap release deploy undeploy r-lock lint test test-unit test-integration test-sandbox test-platforms molecule bench clean stop-s3

help:
	@echo "make release   build, publish and verify a release on the local platform"
	@echo "make test      lint, unit and handler tests, local and sandbox release tests, Molecule scenarios"
	@echo "make deploy    serve the latest verified release on http://127.0.0.1:9000/ (again: swap to the newest)"
	@echo "make undeploy  stop the local function"
	@echo "make r-lock    PACKAGES=\"randomForest mgcv\" [REPO=debian|cran|URL] [OUT=r.lock.json]: lock R packages"
	@echo "make lint      ansible-lint (production), yamllint, ruff, ansible-test sanity"
	@echo "make bench     package and release figures against their targets (dist/bench.json)"
	@echo "make stop-s3   stop the local SeaweedFS (data is kept under .state/)"

bootstrap:
	@scripts/bootstrap.sh

# requirements.lock: every pin of requirements.txt resolved, each with the sha256 of its
# distributions (bootstrap installs with --require-hashes). Keeps the pins it already has.
lock: bootstrap
	$(BIN)/uv pip compile -q requirements.txt --generate-hashes --python-version 3.11 \
	  --custom-compile-command "make lock" -o requirements.lock

# scripts/release: bootstrap, then the playbook; a first release on a machine records its
# wall time, set-up included, for the bench.
release:
	@scripts/release $(ARGS)

# The latest verified release as a local function (playbooks/deploy.yml, role local_function).
deploy: bootstrap
	$(BIN)/ansible-playbook playbooks/deploy.yml $(ARGS)

undeploy: bootstrap
	$(BIN)/ansible-playbook playbooks/deploy.yml -e deploy_state=absent $(ARGS)

# A lock of R packages and what they need (docs/r-packages.md): REPO debian (Debian's
# archive, SUITE trixie by default), cran (cloud.r-project.org) or a CRAN-like URL;
# RENV=renv.lock takes names and versions from renv; CHECK=r.lock.json verifies a lock.
PACKAGES ?=
REPO ?= debian
OUT ?= r.lock.json
r-lock: bootstrap
	$(BIN)/python scripts/r-lock --repo '$(REPO)' --out '$(OUT)' \
	  $(if $(SUITE),--suite '$(SUITE)') $(if $(RENV),--renv '$(RENV)') \
	  $(if $(CHECK),--check '$(CHECK)') $(PACKAGES)

# Two streams side by side (about 2 min on 2 cores, rather than 2.5 one after the other):
# yamllint, ansible-lint and ruff; ansible-test sanity on the collection as it is packed
# (scripts/sanity: validate-modules, pylint, pep8, import, compile, yamllint...).
lint: bootstrap
	@scripts/side-by-side \
	  lint "$(BIN)/yamllint -s . && $(BIN)/ansible-lint --profile production && $(BIN)/ruff check ." \
	  sanity "$(BIN)/python scripts/sanity"

test-unit: bootstrap
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

# Releases on the local platform (SeaweedFS, podman).
test-integration: bootstrap
	$(BIN)/pytest -m slow tests/integration --durations=0 --durations-min=30 $(PYTEST_ARGS)

# Releases on the sandbox platform (moto, SSH containers). A release that needs the R or
# Python the other stream is building waits for it (the build's claim in the cache).
test-sandbox: bootstrap
	$(BIN)/pytest -m slow tests/sandbox --durations=0 --durations-min=30 $(PYTEST_ARGS)

# Molecule scenarios that use an S3 (the scenarios' own, .state/molecule, one after the
# other since local_s3's restarts it), with lambda_package, whose zip package_test tests.
MOLECULE_WITH_S3 := local_s3 artifact_store deploy ami_watch lambda_package package_test

# Two streams side by side, CPU-bound on 2 cores, so that they end at about the same time:
# the local platform's releases then the Molecule scenarios with hosts of their own and no
# S3; $(1) (make test: lint and the fast tests), the sandbox's releases, then the scenarios
# with an S3. Each stream runs every part whatever failed before it, and fails if any did.
streams = scripts/side-by-side \
  local "$(MAKE) --no-print-directory -k test-integration molecule \
    MOLECULE_ARGS='--except $(MOLECULE_WITH_S3)'" \
  sandbox "$(MAKE) --no-print-directory -k $(1) test-sandbox molecule \
    MOLECULE_ARGS='$(MOLECULE_WITH_S3)'"

test-platforms: bootstrap
	@$(call streams,)

# Every scenario; MOLECULE_ARGS: scenario names, or --except and names.
molecule: bootstrap
	scripts/molecule-all.sh $(MOLECULE_ARGS)

bench: bootstrap
	$(BIN)/python bench/run.py $(BENCH_ARGS)

test: bootstrap
	@$(call streams,lint test-unit)

stop-s3: bootstrap
	$(BIN)/ansible-playbook playbooks/local_s3.yml -e local_s3_state=absent

clean:
	rm -rf dist .state/tmp .pytest_cache
