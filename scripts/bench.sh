#!/usr/bin/env bash
# bench.sh — txlane against PostgreSQL direct and PgBouncer, measured with pgbench.
#
# Usage: bash scripts/bench.sh [SCENARIO...]        (default: select mixed churn storm floor)
#
# Builds bin/txlane, starts a throwaway PostgreSQL with pgvector (scripts/pg.sh), PgBouncer from
# the distribution's package and txlane with its default configuration, all on 127.0.0.1, and
# runs pgbench against each, interleaved: every point (scenario, -M mode, client count) runs
# direct, then PgBouncer and txlane in session mode, then both in transaction mode, back to
# back, so that other load on the machine falls on all of them alike.
#
# Scenarios:
#   select  pgbench -S (the built-in select-only script) on pgbench's tables (BENCH_SCALE).
#   mixed   a transaction that updates an account, reads the vector table bench_items (a
#           nearest-neighbour read inside the transaction) and reads the account back, then a
#           vector read outside a transaction. With -M simple every statement carries a
#           sqlcommenter traceparent comment fresh per transaction, as OpenTelemetry writes
#           them; with -M extended and prepared it carries none (pgbench would turn the
#           comment's variables into parameters the server cannot type).
#   churn   pgbench -S -C (a new connection per transaction, as serverless functions and PHP
#           do), BENCH_CHURN_CLIENTS clients, -M simple: what a login costs. PgBouncer and txlane
#           both check logins themselves here (auth_type trust, an auth file naming postgres), so
#           that a login can be served from a pooled backend.
#   storm   the vector lane's purpose: pgbench's TPC-B-like OLTP script at a fixed rate
#           (BENCH_STORM_RATE transactions/s over BENCH_STORM_OLTP_CLIENTS clients), alone and
#           then beside a storm of exact nearest-neighbour queries on bench_docs from
#           BENCH_STORM_CLIENTS other clients (more than the lane's read_pool.max_conns,
#           BENCH_STORM_LANE_CONNS), direct and through txlane (a second instance whose lane
#           waits for a connection rather than falling back to the primary). It prints the
#           OLTP latency with and without the storm and the ratio of the p99s, with txlane's
#           CPU seconds over the OLTP run (the storm's share included) and the storm's queries/s.
#   floor   what the Go runtime costs a proxy: pgbench -S (BENCH_QUERY_MODES, the client counts
#           of BENCH_CLIENTS up to 32) through the three byte relays of bench/relayfloor (a
#           client's bytes to its own server connection and back, nothing looked at: relay-std
#           on the standard net package with a goroutine per direction, as txlane; relay-gnet on
#           gnet's event loops; relay-epoll on one OS thread and one epoll set, PgBouncer's
#           shape, written against the system calls; relay-hybrid with a goroutine per client
#           and the server connections on one epoll thread), PgBouncer and txlane, all in session
#           mode. Each relay's cpu_us/tx is the least a Go proxy of its shape pays per
#           transaction. Builds bench/relayfloor (its own module, so that txlane does not depend
#           on gnet).
#
# Columns: tps (pgbench's, without connection set-up); p50 and p99 latency in ms, from
# pgbench's per-transaction log (with a rate, from each transaction's scheduled start);
# ÷pgb and ÷direct, the tps ratio to PgBouncer in the same pool mode and to direct;
# cpu_us/tx, the proxy process's CPU time (utime + stime of /proc/PID/stat, clock-tick
# resolution) over the point, connection set-up included, divided by the transactions done.
# n/a: txlane's transaction pool mode when `txlane check` refuses `pool_mode: transaction`,
# PgBouncer before 1.21 with -M prepared in transaction mode (it has no prepared statements there),
# and mixed -M prepared in transaction mode with more clients than BENCH_TX_POOL_SIZE (pgbench
# prepares synchronously at first use, blocking its thread's other clients, which may hold every
# backend in their transactions: the load generator deadlocks).
#
# Environment (defaults in brackets):
#   BENCH_SECONDS [5]           seconds per point
#   BENCH_CLIENTS [1 8 32 200]  client counts
#   BENCH_POOL_MODES [session transaction]
#   BENCH_QUERY_MODES [simple extended prepared]   pgbench -M
#   BENCH_THREADS [2]           pgbench -j (at most the client count)
#   BENCH_SCALE [10]            pgbench -i -s
#   BENCH_TX_POOL_SIZE [20]     server connections per pool in transaction mode (PgBouncer's
#                               default_pool_size, txlane's pool_size)
#   BENCH_CHURN_CLIENTS [4]     clients of the churn scenario
#   BENCH_ITEMS [2000]          rows of bench_items (vector(32), mixed)
#   BENCH_STORM_SECONDS [2 x BENCH_SECONDS], BENCH_STORM_RATE [100], BENCH_STORM_OLTP_CLIENTS [4],
#   BENCH_STORM_CLIENTS [16], BENCH_STORM_LANE_CONNS [2], BENCH_STORM_ROWS [20000]
#                               (bench_docs: vector(128), no index: every query scans it)
#   BENCH_KEEP [0]              1: keep the work directory (logs, configurations, pgbench logs)
#
# A quick run: BENCH_SECONDS=2 BENCH_CLIENTS="1 8" bash scripts/bench.sh   (a few minutes)
#
# Needs root or sudo to install what is missing: PostgreSQL and pgvector (scripts/pg.sh),
# pgbouncer (apt; its system service is left stopped and disabled), Go to build txlane.
# Every process the script starts is stopped when it ends, however it ends.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${BENCH_SECONDS:-5}
CLIENTS=${BENCH_CLIENTS:-1 8 32 200}
POOL_MODES=${BENCH_POOL_MODES:-session transaction}
QUERY_MODES=${BENCH_QUERY_MODES:-simple extended prepared}
THREADS=${BENCH_THREADS:-2}
SCALE=${BENCH_SCALE:-10}
TX_POOL_SIZE=${BENCH_TX_POOL_SIZE:-20}
CHURN_CLIENTS=${BENCH_CHURN_CLIENTS:-4}
ITEMS=${BENCH_ITEMS:-2000}
STORM_SECS=${BENCH_STORM_SECONDS:-$((2 * SECS))}
STORM_RATE=${BENCH_STORM_RATE:-100}
STORM_OLTP_CLIENTS=${BENCH_STORM_OLTP_CLIENTS:-4}
STORM_CLIENTS=${BENCH_STORM_CLIENTS:-16}
STORM_LANE_CONNS=${BENCH_STORM_LANE_CONNS:-2}
STORM_ROWS=${BENCH_STORM_ROWS:-20000}
KEEP=${BENCH_KEEP:-0}
SCENARIOS=${*:-select mixed churn storm floor}

log() { printf 'bench.sh: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

for v in SECS THREADS SCALE TX_POOL_SIZE ITEMS STORM_SECS STORM_RATE STORM_OLTP_CLIENTS STORM_CLIENTS \
	STORM_LANE_CONNS STORM_ROWS; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive number, not '${!v}'"
done
for c in $CLIENTS; do [[ $c =~ ^[1-9][0-9]*$ ]] || die "BENCH_CLIENTS: '$c' is not a client count"; done
for m in $POOL_MODES; do [[ $m == session || $m == transaction ]] || die "BENCH_POOL_MODES: unknown mode '$m'"; done
for m in $QUERY_MODES; do [[ $m =~ ^(simple|extended|prepared)$ ]] || die "BENCH_QUERY_MODES: unknown mode '$m'"; done
for s in $SCENARIOS; do [[ $s =~ ^(select|mixed|churn|storm|floor)$ ]] || die "unknown scenario '$s' (select, mixed, churn, storm, floor)"; done

as_root() {
	if [[ $(id -u) -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else die "root is needed to run: $*"; fi
}

# ---- what is needed ---------------------------------------------------------------------------

command -v go >/dev/null 2>&1 || die "go is not on PATH"
bash scripts/pg.sh install

# install_pgbouncer installs the distribution's pgbouncer without letting its system service
# run: this script starts its own process with its own configuration.
install_pgbouncer() {
	command -v pgbouncer >/dev/null 2>&1 && return 0
	command -v apt-get >/dev/null 2>&1 || die "pgbouncer is missing and there is no apt-get; install it by hand"
	local guard=
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		# Packages' maintainer scripts ask invoke-rc.d, which asks this, before starting a service.
		printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
		as_root chmod 755 /usr/sbin/policy-rc.d
		guard=1
	fi
	log "apt-get install pgbouncer"
	local ok=1 apt_log
	apt_log=$(mktemp)
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgbouncer >"$apt_log" 2>&1 || {
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$apt_log" 2>&1 &&
			as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgbouncer >>"$apt_log" 2>&1
	} || ok=0
	[[ -n $guard ]] && as_root rm -f /usr/sbin/policy-rc.d
	if ((!ok)); then
		cat "$apt_log" >&2
		rm -f "$apt_log"
		die "apt-get install pgbouncer failed"
	fi
	rm -f "$apt_log"
	# Should a service manager have started it anyway: stop and disable it.
	if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
		as_root systemctl disable --now pgbouncer >/dev/null 2>&1 || true
	else
		as_root /etc/init.d/pgbouncer stop >/dev/null 2>&1 || true
		as_root update-rc.d pgbouncer disable >/dev/null 2>&1 || true
	fi
}
install_pgbouncer
command -v pgbench >/dev/null 2>&1 || die "pgbench is missing (it comes with PostgreSQL's packages)"

pgb_version=$(pgbouncer --version | sed -n 's/^PgBouncer \([0-9][0-9.]*\).*/\1/p' | head -n 1)
[[ -n $pgb_version ]] || die "cannot tell pgbouncer's version"
# PgBouncer supports protocol-level prepared statements in transaction mode from 1.21 on.
pgb_prepared_tx=0
IFS=. read -r pgb_major pgb_minor _ <<<"$pgb_version"
if ((pgb_major > 1 || pgb_major == 1 && pgb_minor >= 21)); then pgb_prepared_tx=1; fi

log "building bin/txlane"
go build -o bin/txlane ./cmd/txlane

# ---- processes ---------------------------------------------------------------------------------

work=$(mktemp -d "${TMPDIR:-/tmp}/txlane-bench.XXXXXX")
chmod 755 "$work"
pids=() # every process started here, stopped by cleanup

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	local status=$? pid i
	trap - EXIT INT TERM
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do
		for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [[ -d $work/pg ]]; then bash scripts/pg.sh stop "$work/pg" >/dev/null 2>&1 || log "could not stop the cluster in $work/pg"; fi
	if [[ $KEEP == 1 ]]; then log "kept $work"; else rm -rf "$work"; fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port prints a TCP port on 127.0.0.1 that nothing listens on, below
# the kernel's range for outgoing connections (net.ipv4.ip_local_port_range,
# 32768-60999 by default): a port in that range may be taken by an outgoing
# connection between the check and the bind.
free_port() {
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + RANDOM % 12000))
		port_in_use "$p" || {
			echo "$p"
			return 0
		}
	done
	die "no free TCP port found"
}

# wait_port waits until something listens on port $1, or process $2 exits.
wait_port() {
	local i
	for ((i = 0; i < 300; i++)); do
		port_in_use "$1" && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

max_clients=0
for c in $CLIENTS; do
	if ((c > max_clients)); then max_clients=$c; fi
done
if ((STORM_OLTP_CLIENTS + STORM_CLIENTS > max_clients)); then max_clients=$((STORM_OLTP_CLIENTS + STORM_CLIENTS)); fi
# PgBouncer keeps its idle server connections while txlane opens its own (session pools as large
# as the client count in both, beside direct clients): room for all of them.
log "starting PostgreSQL"
dsn=$(TXLANE_PG_OWNER_PID=$$ TXLANE_PG_MAX_CONNECTIONS=$((3 * max_clients + 100)) bash scripts/pg.sh start "$work/pg")
pgport=$(sed -n 's|^postgres://[^@]*@127\.0\.0\.1:\([0-9]*\)/.*|\1|p' <<<"$dsn")
[[ -n $pgport ]] || die "cannot read the port of $dsn"
direct="postgres://postgres@127.0.0.1:$pgport/bench?sslmode=disable"
psql_direct() { psql -X -q -v ON_ERROR_STOP=1 "$direct" "$@"; }

log "loading data (pgbench scale $SCALE, bench_items $ITEMS rows, bench_docs $STORM_ROWS rows)"
psql -X -q -v ON_ERROR_STOP=1 "$dsn" -c 'CREATE DATABASE bench'
pgbench -i -q -s "$SCALE" "$direct" >"$work/init.log" 2>&1 || {
	cat "$work/init.log" >&2
	die "pgbench -i failed"
}
psql_direct <<SQL
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE bench_items (id int PRIMARY KEY, embedding vector(32) NOT NULL);
INSERT INTO bench_items SELECT i, (SELECT array_agg(random())::vector(32) FROM generate_series(1, 32) WHERE i > 0)
  FROM generate_series(1, $ITEMS) i;
CREATE TABLE bench_docs (id int PRIMARY KEY, embedding vector(128) NOT NULL);
INSERT INTO bench_docs SELECT i, (SELECT array_agg(random())::vector(128) FROM generate_series(1, 128) WHERE i > 0)
  FROM generate_series(1, $STORM_ROWS) i;
VACUUM ANALYZE;
SQL

# PgBouncer: one process, a database alias per pool mode. It refuses to run as root.
pgb_port=$(free_port)
cat >"$work/userlist.txt" <<'EOF'
"postgres" ""
EOF
cat >"$work/pgbouncer.ini" <<EOF
[databases]
bench_session = host=127.0.0.1 port=$pgport dbname=bench pool_mode=session pool_size=$((max_clients + 10))
bench_transaction = host=127.0.0.1 port=$pgport dbname=bench pool_mode=transaction pool_size=$TX_POOL_SIZE
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $pgb_port
unix_socket_dir =
auth_type = trust
auth_file = $work/userlist.txt
logfile = $work/pgbouncer.log
max_client_conn = $((max_clients + 100))
default_pool_size = $TX_POOL_SIZE
ignore_startup_parameters = extra_float_digits
EOF
chmod 644 "$work/userlist.txt" "$work/pgbouncer.ini"
touch "$work/pgbouncer.log"
run_as_pg=()
if [[ $(id -u) -eq 0 ]]; then
	chown postgres: "$work/pgbouncer.log"
	# setpriv execs pgbouncer itself, so $! is pgbouncer's pid (its CPU time is measured).
	run_as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups --)
fi
log "starting PgBouncer $pgb_version on 127.0.0.1:$pgb_port"
"${run_as_pg[@]}" pgbouncer "$work/pgbouncer.ini" >>"$work/pgbouncer.out" 2>&1 &
pgb_pid=$!
pids+=("$pgb_pid")
wait_port "$pgb_port" "$pgb_pid" || {
	cat "$work/pgbouncer.out" "$work/pgbouncer.log" >&2
	die "PgBouncer did not start"
}

# start_txlane NAME EXTRA_YAML starts txlane on its defaults plus EXTRA_YAML (top-level keys)
# and sets started_port and started_pid.
start_txlane() {
	local name=$1 extra=$2 admin
	started_port=$(free_port)
	admin=$(free_port)
	printf 'listen: 127.0.0.1:%s\nprimary: "postgres://postgres@127.0.0.1:%s/bench?sslmode=disable"\nadmin:\n  listen: 127.0.0.1:%s\n%s' \
		"$started_port" "$pgport" "$admin" "$extra" >"$work/$name.yaml"
	bin/txlane --config "$work/$name.yaml" >"$work/$name.log" 2>&1 &
	started_pid=$!
	pids+=("$started_pid")
	wait_port "$started_port" "$started_pid" || {
		cat "$work/$name.log" >&2
		die "txlane ($name) did not start"
	}
}

# Both txlane instances check logins themselves, as PgBouncer does here (auth_type trust): a login
# can then be served from a pooled backend. The session-mode pool is as large as PgBouncer's.
printf '"postgres" "unused: auth_type trust"\n' >"$work/txlane-users.txt"
tx_auth="auth_type: trust
auth_file: $work/txlane-users.txt
"
log "starting txlane (session mode, auth_type trust)"
start_txlane txlane-session "${tx_auth}pool_size: $((max_clients + 10))
"
tx_port=$started_port tx_pid=$started_pid

# txlane's transaction pool mode, when this build has it (PgBouncer's key names): its pool as
# large as PgBouncer's if it takes default_pool_size.
txt_port='' txt_pid='' txt_conf=''
# probe YAML: does txlane check accept these keys?
probe() {
	printf 'primary: "postgres://postgres@127.0.0.1:1/x"\n%s' "$1" >"$work/probe.yaml"
	bin/txlane check --config "$work/probe.yaml" >/dev/null 2>&1
}
if [[ " $POOL_MODES " == *" transaction "* ]]; then
	for c in $'pool_mode: transaction\npool_size: '"$TX_POOL_SIZE"$'\n' $'pool_mode: transaction\n'; do
		if probe "$c"; then
			txt_conf=$c
			break
		fi
	done
	if [[ -n $txt_conf ]]; then
		log "starting txlane (pool_mode: transaction, auth_type trust)"
		start_txlane txlane-transaction "$tx_auth$txt_conf"
		txt_port=$started_port txt_pid=$started_pid
	else
		log "txlane check refuses pool_mode: transaction: its transaction-mode rows are n/a"
	fi
fi

# ---- measuring ---------------------------------------------------------------------------------

clk_tck=$(getconf CLK_TCK)

# cpu_ticks prints utime + stime of process $1 in clock ticks (fields 14 and 15 of
# /proc/PID/stat, counted after the command name, which may hold spaces).
cpu_ticks() {
	local stat
	stat=$(<"/proc/$1/stat")
	stat=${stat##*) }
	# shellcheck disable=SC2086 # split into fields on purpose
	set -- $stat
	echo $((${12} + ${13}))
}

# run_pgbench OUT_PREFIX PID CONNSTR PGBENCH_ARGS... runs pgbench and sets tps, p50, p99, tx,
# cpu (µs of process PID per transaction) and cpu_s (its CPU seconds over the run; both "-"
# without PID); ok=0 when pgbench failed.
run_pgbench() {
	local out=$1 pid=$2 conn=$3 before after
	shift 3
	rm -f "$out".log*
	[[ $pid != - ]] && before=$(cpu_ticks "$pid")
	ok=1
	PGCONNECT_TIMEOUT=30 pgbench -n -l --log-prefix="$out.log" "$@" "$conn" >"$out.out" 2>&1 || ok=0
	[[ $pid != - ]] && after=$(cpu_ticks "$pid")
	tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out.out" | tail -n 1)
	tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out.out" | head -n 1)
	if grep -q '^number of failed transactions: [1-9]' "$out.out"; then ok=0; fi
	if [[ -z $tps || -z $tx || $tx == 0 ]]; then ok=0; fi
	if ((!ok)); then
		log "pgbench $* failed:"
		grep -m 3 -i 'error\|fatal' "$out.out" >&2 || tail -n 3 "$out.out" >&2
		tps=- p50=- p99=- cpu=- cpu_s=-
		return 0
	fi
	read -r p50 p99 < <(cat "$out".log* | awk '$3 ~ /^[0-9]+$/ { print $3 }' | sort -n |
		awk '{ v[NR] = $1 } END { if (NR == 0) { print "- -"; exit }
			i50 = int(NR * 0.50 + 0.5); if (i50 < 1) i50 = 1
			i99 = int(NR * 0.99 + 0.5); if (i99 < 1) i99 = 1; if (i99 > NR) i99 = NR
			printf "%.2f %.2f\n", v[i50] / 1000, v[i99] / 1000 }')
	if [[ $pid == - ]]; then
		cpu=- cpu_s=-
	else
		cpu=$(awk -v t=$((after - before)) -v hz="$clk_tck" -v n="$tx" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')
		cpu_s=$(awk -v t=$((after - before)) -v hz="$clk_tck" 'BEGIN { printf "%.2f", t / hz }')
	fi
	tps=$(awk -v t="$tps" 'BEGIN { printf "%.1f", t }')
}

ratio() { if [[ $1 == - || $2 == - || $2 == 0 || $2 == 0.0 ]]; then echo -; else awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; fi; }

row_fmt='%-8s %-12s %-9s %7s  %-12s %10s %8s %8s %8s %8s %10s\n'
header() {
	# shellcheck disable=SC2059 # the format is ours
	printf "$row_fmt" scenario pool_mode -M clients target tps p50_ms p99_ms ÷pgb ÷direct cpu_us/tx
}
row() {
	# shellcheck disable=SC2059
	printf "$row_fmt" "$@"
}

# mixed_script COMMENT prints the mixed scenario's pgbench script, each statement ending with
# COMMENT.
mixed_script() {
	local c=$1
	printf '%s\n' '\set aid random(1, 100000 * :scale)' '\set delta random(-5000, 5000)' \
		"\\set item random(1, $ITEMS)" '\set t1 random(1000000000000000, 9999999999999999)' \
		'\set t2 random(1000000000000000, 9999999999999999)' '\set s1 random(1000000000000000, 9999999999999999)' \
		"BEGIN$c;" \
		"UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid$c;" \
		"SELECT id FROM bench_items ORDER BY embedding <-> (SELECT embedding FROM bench_items WHERE id = :item) LIMIT 5$c;" \
		"SELECT abalance FROM pgbench_accounts WHERE aid = :aid$c;" \
		"COMMIT$c;" \
		"SELECT id FROM bench_items ORDER BY embedding <-> (SELECT embedding FROM bench_items WHERE id = :item) LIMIT 5$c;"
}
# A trace-id of 32 decimal digits (valid hex) and a span-id of 16, fresh per transaction.
mixed_script " /*traceparent='00-:t1:t2-:s1-01'*/" >"$work/mixed-traceparent.sql"
mixed_script "" >"$work/mixed.sql"
printf '%s\n' "\\set id random(1, $STORM_ROWS)" \
	'SELECT id FROM bench_docs ORDER BY embedding <-> (SELECT embedding FROM bench_docs WHERE id = :id) LIMIT 10;' \
	>"$work/storm.sql"

# target_conn TARGET POOL_MODE prints "PID CONNSTR" of a target, or nothing when n/a.
target_conn() {
	case $1 in
	direct) echo "- $direct" ;;
	pgbouncer) echo "$pgb_pid postgres://postgres@127.0.0.1:$pgb_port/bench_$2?sslmode=disable" ;;
	txlane)
		if [[ $2 == session ]]; then
			echo "$tx_pid postgres://postgres@127.0.0.1:$tx_port/bench?sslmode=disable"
		elif [[ -n $txt_port ]]; then
			echo "$txt_pid postgres://postgres@127.0.0.1:$txt_port/bench?sslmode=disable"
		fi
		;;
	esac
}

# throughput SCENARIO runs the select or mixed scenario over every mode and client count.
throughput() {
	local scen=$1 qmode clients pmode target pid conn args na direct_tps pgb_tps n=0
	local qmodes=$QUERY_MODES clist=$CLIENTS
	if [[ $scen == churn ]]; then qmodes=simple clist=$CHURN_CLIENTS; fi
	echo
	echo "== $scen: $SECS s per point"
	header
	for qmode in $qmodes; do
		for clients in $clist; do
			args=(-M "$qmode" -c "$clients" -j "$((clients < THREADS ? clients : THREADS))" -T "$SECS")
			case $scen in
			select) args+=(-S) ;;
			churn) args+=(-S -C) ;;
			mixed)
				if [[ $qmode == simple ]]; then args+=(-f "$work/mixed-traceparent.sql"); else args+=(-f "$work/mixed.sql"); fi
				;;
			esac
			n=$((n + 1))
			run_pgbench "$work/$scen-$n-direct" - "$direct" "${args[@]}"
			direct_tps=$tps
			row "$scen" - "$qmode" "$clients" direct "$tps" "$p50" "$p99" - 1.00 -
			for pmode in $POOL_MODES; do
				pgb_tps=-
				for target in pgbouncer txlane; do
					na='' pid='' conn=''
					read -r pid conn < <(target_conn "$target" "$pmode") || true
					[[ -z ${conn:-} ]] && na="n/a"
					if [[ $target == pgbouncer && $pmode == transaction && $qmode == prepared ]] && ((!pgb_prepared_tx)); then
						na="n/a"
					fi
					# NOTE: pgbench -M prepared prepares each statement synchronously at
					# its first use, blocking its thread: one client waiting there for a
					# pooled backend stalls the thread's other clients, which may hold
					# every backend inside their transactions (a deadlock of the load
					# generator; a proxy pooling per transaction cannot prevent it).
					if [[ $scen == mixed && $pmode == transaction && $qmode == prepared ]] && ((clients > TX_POOL_SIZE)); then
						na="n/a"
					fi
					if [[ -n $na ]]; then
						row "$scen" "$pmode" "$qmode" "$clients" "$target" n/a n/a n/a n/a n/a n/a
						continue
					fi
					run_pgbench "$work/$scen-$n-$target-$pmode" "$pid" "$conn" "${args[@]}"
					[[ $target == pgbouncer ]] && pgb_tps=$tps
					row "$scen" "$pmode" "$qmode" "$clients" "$target" "$tps" "$p50" "$p99" \
						"$(ratio "$tps" "$pgb_tps")" "$(ratio "$tps" "$direct_tps")" "$cpu"
				done
			done
		done
	done
}

# storm runs the OLTP script alone and beside the storm, direct and through txlane.
storm() {
	local lane_port lane_pid target pid conn with storm_pid storm_tps
	local -A p99s
	echo
	echo "== storm: OLTP (pgbench tpcb-like, $STORM_OLTP_CLIENTS clients, $STORM_RATE tx/s, $STORM_SECS s) alone and beside"
	echo "   $STORM_CLIENTS clients of exact nearest-neighbour queries (bench_docs, $STORM_ROWS x vector(128));"
	echo "   txlane: read_pool.max_conns $STORM_LANE_CONNS, waiting for a lane connection instead of using the primary"
	start_txlane txlane-storm "read_pool:
  max_conns: $STORM_LANE_CONNS
  acquire_timeout: 10m
query_wait_timeout: 10m
"
	lane_port=$started_port lane_pid=$started_pid
	printf '%-8s %-8s %-6s %8s %8s %8s %12s %10s\n' scenario target storm oltp_tps p50_ms p99_ms proxy_cpu_s storm_q/s
	for with in alone storm; do
		for target in direct txlane; do
			if [[ $target == direct ]]; then pid=- conn=$direct; else pid=$lane_pid conn="postgres://postgres@127.0.0.1:$lane_port/bench?sslmode=disable"; fi
			storm_pid='' storm_tps=-
			if [[ $with == storm ]]; then
				PGCONNECT_TIMEOUT=30 pgbench -n -M simple -f "$work/storm.sql" -c "$STORM_CLIENTS" -j "$THREADS" \
					-T "$((STORM_SECS + 3))" "$conn" >"$work/storm-$target.out" 2>&1 &
				storm_pid=$!
				pids+=("$storm_pid")
				sleep 2 # the storm's clients connect and start
			fi
			run_pgbench "$work/storm-oltp-$target-$with" "$pid" "$conn" -M simple -b tpcb-like \
				-c "$STORM_OLTP_CLIENTS" -j 1 -R "$STORM_RATE" -T "$STORM_SECS"
			if [[ -n $storm_pid ]]; then
				wait "$storm_pid" || log "the storm's pgbench failed: $(grep -m 1 -i 'error' "$work/storm-$target.out" || true)"
				storm_tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$work/storm-$target.out" | tail -n 1)
				storm_tps=$(awk -v t="${storm_tps:-0}" 'BEGIN { printf "%.1f", t }')
			fi
			p99s[$target-$with]=$p99
			printf '%-8s %-8s %-6s %8s %8s %8s %12s %10s\n' storm "$target" "$with" "$tps" "$p50" "$p99" "$cpu_s" "$storm_tps"
		done
	done
	echo "OLTP p99 with the storm / without it: direct $(ratio "${p99s[direct-storm]}" "${p99s[direct-alone]}")," \
		"txlane $(ratio "${p99s[txlane-storm]}" "${p99s[txlane-alone]}")"
}

# floor runs pgbench -S through the three relays of bench/relayfloor, PgBouncer and txlane, all in
# session mode, at the client counts of CLIENTS up to 32.
floor() {
	local mode port qmode clients target pid conn args pgb_tps n=0
	local -A relay_port relay_pid
	(cd bench/relayfloor && go build -o "$work/relayfloor" .) || die "could not build bench/relayfloor"
	for mode in std gnet epoll hybrid; do
		port=$(free_port)
		"$work/relayfloor" -mode "$mode" -listen "127.0.0.1:$port" -server "127.0.0.1:$pgport" >"$work/relay-$mode.log" 2>&1 &
		relay_pid[$mode]=$! relay_port[$mode]=$port
		pids+=("$!")
		wait_port "$port" "$!" || {
			cat "$work/relay-$mode.log" >&2
			die "relayfloor -mode $mode did not start"
		}
	done
	echo
	echo "== floor: $SECS s per point, session mode; the relay-* rows relay bytes and look at none"
	header
	for qmode in $QUERY_MODES; do
		for clients in $CLIENTS; do
			((clients <= 32)) || continue
			args=(-S -M "$qmode" -c "$clients" -j "$((clients < THREADS ? clients : THREADS))" -T "$SECS")
			n=$((n + 1))
			pgb_tps=-
			for target in pgbouncer relay-std relay-gnet relay-epoll relay-hybrid txlane; do
				case $target in
				relay-*)
					mode=${target#relay-}
					pid=${relay_pid[$mode]} conn="postgres://postgres@127.0.0.1:${relay_port[$mode]}/bench?sslmode=disable"
					;;
				*) read -r pid conn < <(target_conn "$target" session) ;;
				esac
				run_pgbench "$work/floor-$n-$target" "$pid" "$conn" "${args[@]}"
				[[ $target == pgbouncer ]] && pgb_tps=$tps
				row floor session "$qmode" "$clients" "$target" "$tps" "$p50" "$p99" "$(ratio "$tps" "$pgb_tps")" - "$cpu"
			done
		done
	done
}

echo "$(bin/txlane version 2>/dev/null | head -n 1) | PgBouncer $pgb_version | $(psql_direct -At -c 'SHOW server_version') | $(nproc) CPUs | $(date -u +%FT%TZ)"
for s in $SCENARIOS; do
	case $s in
	select | mixed | churn) throughput "$s" ;;
	storm) storm ;;
	floor) floor ;;
	esac
done
