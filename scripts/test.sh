#!/usr/bin/env bash
# test.sh — every check of the repository: go vet and go test against a real PostgreSQL.
#
# Unless TXLANE_TEST_DATABASE already names a database, one throwaway cluster is started with
# scripts/pg.sh (installing PostgreSQL and pgvector if needed) and shared by all packages; it is
# stopped again however the run ends. Extra `go test` flags come from TESTFLAGS, split on
# whitespace (e.g. TESTFLAGS='-run TestVector -v'). Exits non-zero if vet or any test fails.
# Likewise a second cluster that takes TCP logins only over TLS with SCRAM (pg.sh start-tls) is
# started unless TXLANE_TEST_TLS_DATABASE names one.
set -euo pipefail
cd "$(dirname "$0")/.."

pgdir='' tlsdir=''
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	local d
	for d in "$pgdir" "$tlsdir"; do
		if [[ -n $d ]]; then
			bash scripts/pg.sh stop "$d" || echo "test.sh: could not stop the cluster in $d" >&2
		fi
	done
}
trap cleanup EXIT

command -v go >/dev/null 2>&1 || {
	echo "test.sh: go is not on PATH" >&2
	exit 1
}

# Packages use cgo (pg_query_go): a C compiler must be there.
bash scripts/cc.sh

# Real psycopg 3 and pgjdbc clients run through txlane in proxy/clients_test.go (Debian's
# packages: psycopg for the system python3, pgjdbc with a JRE).
clients=()
/usr/bin/python3 -c 'import psycopg' >/dev/null 2>&1 || clients+=(python3 python3-psycopg)
[[ -f /usr/share/java/postgresql.jar ]] || clients+=(libpostgresql-jdbc-java)
command -v java >/dev/null 2>&1 || clients+=(default-jre-headless)
if ((${#clients[@]})); then
	if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
		echo "test.sh: installing ${clients[*]}" >&2
		apt-get update -qq >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${clients[@]}" >&2
	else
		echo "test.sh: missing client packages: ${clients[*]}" >&2
		exit 1
	fi
fi

if [[ -z ${TXLANE_TEST_DATABASE:-} ]]; then
	pgdir=$(mktemp -d "${TMPDIR:-/tmp}/txlane-test-pg.XXXXXX")
	# The owner pid makes pg.sh stop the cluster even if this script is killed outright.
	TXLANE_TEST_DATABASE=$(TXLANE_PG_OWNER_PID=$$ bash scripts/pg.sh start "$pgdir")
	export TXLANE_TEST_DATABASE
fi
if [[ -z ${TXLANE_TEST_TLS_DATABASE:-} ]]; then
	tlsdir=$(mktemp -d "${TMPDIR:-/tmp}/txlane-test-pg-tls.XXXXXX")
	TXLANE_TEST_TLS_DATABASE=$(TXLANE_PG_OWNER_PID=$$ bash scripts/pg.sh start-tls "$tlsdir")
	export TXLANE_TEST_TLS_DATABASE
fi
echo "test.sh: TXLANE_TEST_DATABASE=$TXLANE_TEST_DATABASE" >&2
echo "test.sh: TXLANE_TEST_TLS_DATABASE=$TXLANE_TEST_TLS_DATABASE" >&2

flags=()
read -ra flags <<<"${TESTFLAGS:-}"

status=0
go vet ./... || status=$?
go test -count=1 -timeout 20m "${flags[@]}" ./... || status=$?
exit "$status"
