# txlane developer entry points.
#
#   make run    start PostgreSQL with pgvector in .tmp/pg (installing both if missing) and
#               txlane in front of it on 127.0.0.1:6432 (LISTEN=host:port, ADMIN_LISTEN=host:port)
#   make test   go vet and every test against a throwaway PostgreSQL (scripts/test.sh);
#               extra go test flags: make test TESTFLAGS='-run TestVector -v'
#   make bench  the Go benchmarks of the per-request path (no PostgreSQL needed);
#               extra flags: make bench BENCHFLAGS='-bench PlanAndDecide -count 5'
#   bash scripts/bench.sh   pgbench: txlane against PostgreSQL direct and PgBouncer (see README)
#
# PostgreSQL clusters come from scripts/pg.sh; `make pg-stop` stops the one `make run` left.

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

PGDIR := .tmp/pg
# Addresses `make run` gives txlane (clients; the admin HTTP endpoint).
LISTEN ?= 127.0.0.1:6432
ADMIN_LISTEN ?= 127.0.0.1:9187

.DEFAULT_GOAL := build
.PHONY: build bin/txlane run test pg-start pg-stop bench fmt vet clean

build: bin/txlane

# Always handed to go build, which knows best whether anything changed.
bin/txlane:
	$(GO) build -o $@ ./cmd/txlane

run: bin/txlane pg-start
	dsn=$$(bash scripts/pg.sh dsn $(PGDIR)); \
	sed -e "s|^primary:.*|primary: \"$$dsn\"|" -e "s|^listen:.*|listen: $(LISTEN)|" \
		-e "s|^  listen: 127.0.0.1:9187|  listen: $(ADMIN_LISTEN)|" examples/txlane.yaml >.tmp/txlane.yaml
	@echo 'Connect with: psql "postgres://postgres@$(LISTEN)/txlane_test?sslmode=disable"'
	@echo 'PostgreSQL keeps running afterwards; stop it with: make pg-stop'
	exec bin/txlane --config .tmp/txlane.yaml

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
	rm -rf bin .tmp/txlane.yaml
