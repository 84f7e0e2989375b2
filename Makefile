# txlane developer entry points.
#
#   make        build bin/txlane (installing gcc for cgo first if there is no C compiler)
#   make run    start PostgreSQL with pgvector in .tmp/pg (installing both if missing) and
#               txlane in front of it on 127.0.0.1:6432 (LISTEN=host:port, ADMIN_LISTEN=host:port),
#               its vector lane logging in as txlane_reader (see scripts/pg.sh)
#   make test   go vet and every test against a throwaway PostgreSQL (scripts/test.sh);
#               extra go test flags: make test TESTFLAGS='-run TestVector -v'
#   make bench  the Go benchmarks of the per-request path (no PostgreSQL needed);
#               extra flags: make bench BENCHFLAGS='-bench PlanAndDecide -count 5'
#   bash scripts/bench.sh   pgbench: txlane against PostgreSQL direct and PgBouncer (see README)
#
# PostgreSQL clusters come from scripts/pg.sh; `make pg-stop` stops the one `make run` left and
# deletes it with its data (pg.sh stop), and `make run` makes a fresh one when it is not running.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

GO ?= go
TESTFLAGS ?=
export TESTFLAGS
BENCHFLAGS ?=

# Packages with benchmarks, and those benchmarks that need a PostgreSQL server (run them on
# their own with TXLANE_TEST_DATABASE set).
BENCH_PKGS := ./policy ./router ./proxy ./proxy/wire
BENCH_NEEDS_PG := BenchmarkLaneCheck|BenchmarkDiscoverCatalog

PGDIR ?= .tmp/pg
# The binary, and the configuration `make run` writes from examples/txlane.yaml.
BIN ?= bin/txlane
RUNCONF ?= .tmp/txlane.yaml
# Addresses `make run` gives txlane (clients; the admin HTTP endpoint).
LISTEN ?= 127.0.0.1:6432
ADMIN_LISTEN ?= 127.0.0.1:9187

.DEFAULT_GOAL := build
.PHONY: build $(BIN) run test pg-start pg-stop bench fmt vet clean

build: $(BIN)

# Always handed to go build, which knows best whether anything changed. cgo needs a C
# compiler: scripts/cc.sh installs gcc first when there is none.
$(BIN):
	bash scripts/cc.sh
	$(GO) build -o $@ ./cmd/txlane

# The primary is the cluster's superuser postgres (txlane reads the catalog and relays each
# client's own login); the vector lane logs in as txlane_reader, which is no superuser, so the
# lane serves clients that are not superusers either (txlane_app), as README's "The read
# pool's user" requires.
run: $(BIN) pg-start
	dsn=$$(bash scripts/pg.sh dsn $(PGDIR)); reader=$$(bash scripts/pg.sh reader-dsn $(PGDIR)); \
	mkdir -p $(dir $(RUNCONF)); \
	sed -e "s|^primary:.*|primary: \"$$dsn\"|" -e "s|^listen:.*|listen: $(LISTEN)|" \
		-e "s|^  dsn: \"\"$$|  dsn: \"$$reader\"|" \
		-e "s|^  listen: 127.0.0.1:9187|  listen: $(ADMIN_LISTEN)|" examples/txlane.yaml >$(RUNCONF); \
	echo "PostgreSQL itself: $$dsn (from: bash scripts/pg.sh dsn $(PGDIR))"
	@echo 'Connect with: psql "postgres://txlane_app@$(LISTEN)/txlane_test?sslmode=disable"'
	@echo '  (txlane_app is no superuser, so its reads of vector tables run on the vector lane;'
	@echo '   the superuser postgres works too, its reads stay on the primary)'
	@echo 'PostgreSQL keeps running afterwards; make pg-stop stops it and deletes it with its data'
	exec $(BIN) --config $(RUNCONF)

test:
	bash scripts/test.sh

pg-start:
	bash scripts/pg.sh start $(PGDIR)

pg-stop:
	bash scripts/pg.sh stop $(PGDIR)

bench:
	$(GO) test -run '^$$' -bench . -skip '$(BENCH_NEEDS_PG)' -benchmem $(BENCHFLAGS) $(BENCH_PKGS)

fmt:
	$(GO) fmt ./...

vet:
	$(GO) vet ./...

clean: pg-stop
	rm -rf bin $(RUNCONF)
