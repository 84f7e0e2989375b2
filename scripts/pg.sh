#!/usr/bin/env bash
# pg.sh — throwaway PostgreSQL clusters with pgvector, for txlane development and tests.
#
# Usage:
#   scripts/pg.sh install     install PostgreSQL >= 15 and pgvector if they are missing
#   scripts/pg.sh start DIR   run install, start a fresh cluster in DIR, print its DSN
#   scripts/pg.sh start-tls DIR
#                             the same, but a cluster reachable over TCP only with TLS and a
#                             password (see below)
#   scripts/pg.sh stop DIR    stop the cluster in DIR (if running) and remove DIR
#   scripts/pg.sh dsn DIR     print the DSN of the cluster in DIR
#   scripts/pg.sh reader-dsn DIR
#                             print the DSN of the cluster's vector-lane login, txlane_reader
#
# stdout carries only the DSN (start, dsn); everything else goes to stderr.
#
# When TXLANE_PG_OWNER_PID is set, start also leaves a watcher behind that stops the cluster
# and removes DIR once that process has exited, so a test binary that crashes or times out
# does not leak a server.
#
# Clusters trust every local connection except three TCP roles that exercise the password
# methods: txlane_md5/md5pass (md5), txlane_scram/scrampass (scram-sha-256) and
# txlane_password/plainpass (password). txlane_app logs in without a password. The database
# txlane_test and template1 have the vector extension.
#
# txlane_reader is a login for txlane's vector lane (read_pool.dsn) as README's "The read pool's
# user" prescribes: NOSUPERUSER NOINHERIT, nothing of its own, granted the client roles above
# (txlane_app and the three password roles) so that the lane can take their role with SET ROLE.
# `make run` gives it to txlane. The lane serves only clients that are not superusers with it, so
# the superuser postgres reads on the primary.
#
# A start-tls cluster is what managed PostgreSQL services look like: ssl = on with a fresh
# self-signed certificate (openssl, installed if missing; a copy for clients is DIR/root.crt,
# valid for 127.0.0.1), and over TCP only `hostssl` lines: txlane_md5/md5pass with md5, every
# other role with scram-sha-256, the superuser postgres with the password txlane-tls. The
# printed DSN uses sslmode=verify-full with that certificate. txlane_scram/scrampass and
# txlane_md5/md5pass exist as above, and txlane_auth/authpass (no superuser) may call
# txlane_auth.lookup(user) in txlane_test: a SECURITY DEFINER function returning the user's
# name and secret from pg_authid, for txlane's auth_query.
#
# PostgreSQL comes from the distribution (apt). pgvector comes from the distribution when it
# packages it for the installed major; otherwise it is built from Debian trixie's source
# package, fetched with a private apt configuration that reuses the archive URL of the
# system's own apt sources (the system's apt configuration is never changed).
#
# Environment:
#   PGVECTOR_SOURCE_SUITE  Debian suite to take the pgvector source from (default trixie)
#   PGVECTOR_APT_URI       archive URL for that suite (default: from the system's apt sources)
#   TXLANE_PG_MAX_CONNECTIONS  max_connections of clusters started (default 200)
set -euo pipefail

readonly MIN_MAJOR=15
readonly MARKER=.txlane-pg
readonly SOURCE_SUITE=${PGVECTOR_SOURCE_SUITE:-trixie}
SELF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/$(basename "${BASH_SOURCE[0]}")
readonly SELF

log() { printf 'pg.sh: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

usage() {
	cat >&2 <<'EOF'
usage: pg.sh install
       pg.sh start DIR
       pg.sh start-tls DIR
       pg.sh stop DIR
       pg.sh dsn DIR
       pg.sh reader-dsn DIR
EOF
	exit 2
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# as_root runs a command as root, through sudo when needed.
as_root() {
	if is_root; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "root is needed to run: $*"
	fi
}

# as_pg runs a PostgreSQL server program: initdb, postgres and pg_ctl refuse to run as root.
as_pg() {
	if is_root; then
		id postgres >/dev/null 2>&1 || die "no 'postgres' user to run the server as"
		(cd / && runuser -u postgres -- "$@")
	else
		"$@"
	fi
}

# ---- apt ------------------------------------------------------------------------------------

apt_updated=0

apt_get() { as_root env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }

apt_update() {
	((apt_updated)) && return 0
	log "apt-get update"
	apt_get update -qq >&2
	apt_updated=1
}

# apt_candidate prints the version apt would install for package $1, or nothing.
apt_candidate() {
	apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" && $2 != "(none)" { print $2 }'
}

# apt_install installs the packages that are not installed yet, updating the package lists
# once if one of them is unknown or the install fails.
apt_install() {
	local p missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q ' installed$' || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	for p in "${missing[@]}"; do
		[[ -n $(apt_candidate "$p") ]] || apt_update
	done
	log "apt-get install ${missing[*]}"
	if ! apt_get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
		((apt_updated)) && die "apt-get install ${missing[*]} failed"
		apt_update
		apt_get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
			die "apt-get install ${missing[*]} failed"
	fi
}

# system_archive prints "URI SIGNED-BY" for the first enabled `deb` entry of the system's apt
# sources whose suite is the system's codename (SIGNED-BY is "-" when there is no key file).
system_archive() {
	local codename f
	# shellcheck disable=SC1091 # os-release is a standard file, not part of this repository
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	[[ -n $codename ]] || die "cannot tell the distribution codename from /etc/os-release"
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
		[[ -f $f ]] || continue
		if [[ $f == *.sources ]]; then
			awk -v want="$codename" '
				function flush() {
					if (!found && types ~ /(^|[ \t])deb([ \t]|$)/ && enabled != "no" &&
					    (" " suites " ") ~ ("[ \t]" want "[ \t]") && uris != "") {
						split(uris, u, /[ \t]+/)
						print u[1], (signed ~ /^\// ? signed : "-")
						found = 1
					}
					types = uris = suites = signed = enabled = ""
				}
				/^[ \t]*#/ { next }
				/^[ \t]*$/ { flush(); next }
				/^[A-Za-z-]+:/ {
					i = index($0, ":")
					key = tolower(substr($0, 1, i - 1))
					val = substr($0, i + 1)
					gsub(/^[ \t]+|[ \t]+$/, "", val)
					if (key == "types") types = val
					else if (key == "uris") uris = val
					else if (key == "suites") suites = val
					else if (key == "signed-by") signed = val
					else if (key == "enabled") enabled = tolower(val)
				}
				END { flush() }
			' "$f"
		else
			awk -v want="$codename" '
				$1 != "deb" { next }
				{
					signed = "-"; i = 2
					if ($2 ~ /^\[/) {
						for (; i <= NF; i++) {
							if ($i ~ /^\[?signed-by=/) { s = $i; sub(/^\[?signed-by=/, "", s); sub(/\]$/, "", s); signed = s }
							if ($i ~ /\]$/) { i++; break }
						}
					}
					if ($(i + 1) == want) { print $i, signed; exit }
				}
			' "$f"
		fi
	done | head -n 1
}

# fetch_pgvector_source downloads Debian's pgvector source package into $1/src with a private
# apt configuration and prints the path of the upstream tarball.
fetch_pgvector_source() {
	local dir=$1 uri signed tarballs=()
	if [[ -n ${PGVECTOR_APT_URI:-} ]]; then
		uri=$PGVECTOR_APT_URI
		signed=-
	else
		read -r uri signed < <(system_archive) || true
		[[ -n ${uri:-} ]] || die "no Debian archive found in the system's apt sources; set PGVECTOR_APT_URI"
	fi
	[[ $signed != - && -f $signed ]] || signed=/usr/share/keyrings/debian-archive-keyring.gpg
	local entry="deb-src $uri $SOURCE_SUITE main"
	[[ -f $signed ]] && entry="deb-src [signed-by=$signed] $uri $SOURCE_SUITE main"

	mkdir -p "$dir/sources.list.d" "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/src"
	printf '%s\n' "$entry" >"$dir/sources.list.d/txlane-pgvector.list"
	# apt drops to the _apt user for downloads; let it write where it downloads.
	if is_root && id _apt >/dev/null 2>&1; then
		chown -R _apt "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/src"
	fi
	local apt_opts=(
		-o "Dir::Etc::SourceList=/dev/null"
		-o "Dir::Etc::SourceParts=$dir/sources.list.d"
		-o "Dir::State::Lists=$dir/lists"
		-o "Dir::Cache=$dir/cache"
	)
	log "fetching pgvector source from $SOURCE_SUITE ($uri)"
	apt-get "${apt_opts[@]}" -qq update >&2 || die "apt-get update of the private $SOURCE_SUITE source list failed"
	(cd "$dir/src" && apt-get "${apt_opts[@]}" -qq source --download-only pgvector >&2) ||
		die "apt-get source pgvector failed"
	mapfile -t tarballs < <(find "$dir/src" -maxdepth 1 -name 'pgvector_*.orig.tar.*' ! -name '*.asc' | sort -V)
	((${#tarballs[@]})) || die "no pgvector upstream tarball in $dir/src"
	printf '%s\n' "${tarballs[-1]}"
}

# ---- install --------------------------------------------------------------------------------

# pg_bindir prints the bin directory of the newest installed PostgreSQL >= MIN_MAJOR.
pg_bindir() {
	local d major best=0
	for d in /usr/lib/postgresql/*/bin; do
		major=${d#/usr/lib/postgresql/}
		major=${major%/bin}
		[[ $major =~ ^[0-9]+$ && -x $d/postgres && -x $d/pg_config ]] || continue
		((major >= MIN_MAJOR && major > best)) && best=$major
	done
	((best)) || return 1
	printf '/usr/lib/postgresql/%s/bin\n' "$best"
}

# default_major prints the PostgreSQL major the distribution's "postgresql" package depends on.
default_major() {
	apt-cache depends postgresql 2>/dev/null |
		sed -n 's/^ *Depends: postgresql-\([0-9][0-9]*\)$/\1/p' | head -n 1
}

install_server() {
	command -v apt-get >/dev/null 2>&1 ||
		die "PostgreSQL >= $MIN_MAJOR is not installed under /usr/lib/postgresql and there is no apt-get; install it by hand"
	local major
	[[ -n $(apt_candidate postgresql) ]] || apt_update
	major=$(default_major)
	[[ -n $major ]] || die "apt knows no 'postgresql' package"
	((major >= MIN_MAJOR)) ||
		die "the distribution's PostgreSQL is $major; txlane needs $MIN_MAJOR or newer (install it from PGDG)"
	apt_install "postgresql-$major" "postgresql-server-dev-$major"
}

install_pgvector() {
	local bindir=$1 pgc major sharedir
	pgc=$bindir/pg_config
	sharedir=$("$pgc" --sharedir)
	[[ -f $sharedir/extension/vector.control ]] && return 0
	major=$("$pgc" --version | sed -n 's/^PostgreSQL \([0-9][0-9]*\).*/\1/p')
	command -v apt-get >/dev/null 2>&1 || die "pgvector is missing and there is no apt-get; install it by hand"

	# The distribution's package when there is one (Debian 13 and later, PGDG).
	[[ -n $(apt_candidate "postgresql-$major-pgvector") ]] || apt_update
	if [[ -n $(apt_candidate "postgresql-$major-pgvector") ]]; then
		apt_install "postgresql-$major-pgvector"
		return 0
	fi

	local deps=(make gcc libc6-dev tar xz-utils)
	[[ -f $("$pgc" --includedir-server)/postgres.h ]] || deps+=("postgresql-server-dev-$major")
	apt_install "${deps[@]}"

	local work tarball started=$SECONDS
	if is_root; then work=/var/tmp/txlane-apt; else work=${XDG_CACHE_HOME:-$HOME/.cache}/txlane-apt; fi
	mkdir -p "$work"
	tarball=$(fetch_pgvector_source "$work")
	log "building $(basename "$tarball") for PostgreSQL $major"
	rm -rf "$work/build"
	mkdir -p "$work/build"
	tar -xf "$tarball" -C "$work/build" --strip-components=1
	# OPTFLAGS= drops -march=native: the build must run on any machine of the architecture.
	make -C "$work/build" -s -j"$(nproc)" PG_CONFIG="$pgc" OPTFLAGS= >&2
	as_root make -C "$work/build" -s PG_CONFIG="$pgc" OPTFLAGS= install >&2
	[[ -f $sharedir/extension/vector.control ]] || die "pgvector installed but $sharedir/extension/vector.control is missing"
	log "pgvector installed in $((SECONDS - started))s"
}

# ensure_installed installs what is missing and prints the PostgreSQL bin directory.
ensure_installed() {
	local bindir
	if bindir=$(pg_bindir) && [[ -f $("$bindir/pg_config" --sharedir)/extension/vector.control ]]; then
		printf '%s\n' "$bindir"
		return 0
	fi
	# Serialize concurrent installs (several test binaries may start clusters at once).
	local lockdir
	if is_root; then lockdir=/var/tmp/txlane-apt; else lockdir=${XDG_CACHE_HOME:-$HOME/.cache}/txlane-apt; fi
	mkdir -p "$lockdir"
	exec 9>"$lockdir/lock"
	flock 9
	bindir=$(pg_bindir) || {
		install_server
		bindir=$(pg_bindir) || die "PostgreSQL >= $MIN_MAJOR still missing after install"
	}
	install_pgvector "$bindir"
	exec 9>&-
	printf '%s\n' "$bindir"
}

cmd_install() {
	ensure_installed >/dev/null
}

# ---- clusters -------------------------------------------------------------------------------

# run_dir prints where the cluster of DIR keeps its data, sockets and log.
run_dir() {
	if [[ -f $1/rundir ]]; then cat "$1/rundir"; else printf '%s\n' "$1"; fi
}

running() {
	local dir=$1 run
	[[ -f $dir/$MARKER && -f $dir/bindir && -f $dir/dsn ]] || return 1
	run=$(run_dir "$dir")
	as_pg "$(cat "$dir/bindir")/pg_ctl" -D "$run/data" status >/dev/null 2>&1
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pick_port prints a TCP port on 127.0.0.1 that nothing listens on, below the ephemeral range.
pick_port() {
	local base=$((20000 + RANDOM % 10000)) i
	for ((i = 0; i < 500; i++)); do
		if ! port_in_use $((base + i)); then
			echo $((base + i))
			return 0
		fi
	done
	die "no free TCP port found in $base..$((base + 499))"
}

# tls_setup writes a self-signed certificate for 127.0.0.1 into the data directory $1 and a
# copy for clients to $2/root.crt, and turns TLS on.
tls_setup() {
	local data=$1 dir=$2
	command -v openssl >/dev/null 2>&1 || apt_install openssl
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
		-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
		-keyout "$data/server.key" -out "$data/server.crt" >/dev/null 2>&1 || die "openssl could not make a certificate"
	chmod 600 "$data/server.key"
	if is_root; then chown postgres: "$data/server.key" "$data/server.crt"; fi
	cp "$data/server.crt" "$dir/root.crt"
	cat >>"$data/postgresql.conf" <<EOF
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
password_encryption = 'scram-sha-256'
EOF
	cat >"$data/pg_hba.conf" <<'EOF'
# TYPE   DATABASE  USER        ADDRESS       METHOD
local    all       all                       trust
hostssl  all       txlane_md5  127.0.0.1/32  md5
hostssl  all       all         127.0.0.1/32  scram-sha-256
EOF
}

cmd_start() {
	local dir=$1 tls=${2:-} bindir run port attempt started=$SECONDS
	[[ $dir != *"'"* ]] || die "cluster directory must not contain a single quote: $dir"
	[[ ${TXLANE_PG_MAX_CONNECTIONS:-200} =~ ^[1-9][0-9]*$ ]] ||
		die "TXLANE_PG_MAX_CONNECTIONS must be a positive number, not '$TXLANE_PG_MAX_CONNECTIONS'"
	bindir=$(ensure_installed)

	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd -P)
	if [[ -f $dir/$MARKER ]]; then
		if running "$dir"; then
			cat "$dir/dsn"
			return 0
		fi
		log "cluster in $dir is not running; recreating it"
		cmd_stop "$dir"
		mkdir -p "$dir"
	elif [[ -n $(ls -A "$dir") ]]; then
		die "$dir is not empty and was not made by pg.sh start"
	fi
	touch "$dir/$MARKER"
	printf '%s\n' "$bindir" >"$dir/bindir"

	# The server runs as postgres when we are root, and unix socket paths are limited to about
	# 100 bytes: when DIR does not suit, the cluster lives in a temp dir that DIR points to.
	run=$dir
	if is_root; then
		chown postgres: "$dir"
		(cd / && runuser -u postgres -- test -w "$dir") || run=
	fi
	if [[ -z $run || ${#run} -gt 80 ]]; then
		run=$(mktemp -d /tmp/txlane-pg.XXXXXX)
		printf '%s\n' "$run" >"$dir/rundir"
		is_root && chown postgres: "$run"
		ln -s "$run/postgres.log" "$dir/postgres.log"
	fi

	if ! as_pg "$bindir/initdb" -D "$run/data" --auth=trust -U postgres -E UTF8 --locale=C \
		--no-sync --no-instructions >"$dir/initdb.log" 2>&1; then
		cat "$dir/initdb.log" >&2
		die "initdb failed"
	fi
	cat >>"$run/data/postgresql.conf" <<EOF

# txlane throwaway test cluster (scripts/pg.sh)
listen_addresses = '127.0.0.1'
port = 5432
unix_socket_directories = '$run'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = ${TXLANE_PG_MAX_CONNECTIONS:-200}
shared_buffers = 128MB
log_line_prefix = '%m [%p] %q%u@%d '
EOF
	cat >"$run/data/pg_hba.conf" <<'EOF'
# TYPE  DATABASE  USER             ADDRESS       METHOD
local   all       all                            trust
host    all       txlane_md5       127.0.0.1/32  md5
host    all       txlane_scram     127.0.0.1/32  scram-sha-256
host    all       txlane_password  127.0.0.1/32  password
host    all       all              127.0.0.1/32  trust
host    all       all              ::1/128       trust
EOF
	# NOTE: after the pg_hba.conf above, which it replaces.
	[[ -z $tls ]] || tls_setup "$run/data" "$dir"

	# Another process may take the port between the check and the bind: retry on a new one.
	for attempt in 1 2 3 4 5; do
		port=$(pick_port)
		sed -i "s/^port = [0-9]*$/port = $port/" "$run/data/postgresql.conf"
		if as_pg "$bindir/pg_ctl" -D "$run/data" -l "$run/postgres.log" -w -t 60 start >/dev/null 2>&1; then
			break
		fi
		if ((attempt < 5)) && grep -q 'could not bind\|could not create any TCP/IP sockets' "$run/postgres.log" 2>/dev/null; then
			log "port $port is taken; retrying"
			continue
		fi
		tail -n 20 "$run/postgres.log" >&2 || true
		die "PostgreSQL did not start (log: $run/postgres.log)"
	done

	local psql=(env PGOPTIONS='-c client_min_messages=warning' "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$run" -p "$port" -U postgres)
	"${psql[@]}" -d template1 >&2 <<'EOF'
CREATE EXTENSION IF NOT EXISTS vector;
EOF
	"${psql[@]}" -d postgres >&2 <<'EOF'
CREATE DATABASE txlane_test;
SET password_encryption = 'md5';
CREATE ROLE txlane_md5 LOGIN PASSWORD 'md5pass';
SET password_encryption = 'scram-sha-256';
CREATE ROLE txlane_scram LOGIN PASSWORD 'scrampass';
CREATE ROLE txlane_password LOGIN PASSWORD 'plainpass';
CREATE ROLE txlane_app LOGIN;
GRANT ALL ON DATABASE txlane_test TO txlane_md5, txlane_scram, txlane_password, txlane_app;
CREATE ROLE txlane_reader LOGIN NOSUPERUSER NOINHERIT NOCREATEDB NOCREATEROLE NOBYPASSRLS;
GRANT txlane_app, txlane_md5, txlane_scram, txlane_password TO txlane_reader;
EOF
	"${psql[@]}" -d txlane_test >&2 <<'EOF'
CREATE EXTENSION IF NOT EXISTS vector;
GRANT ALL ON SCHEMA public TO txlane_md5, txlane_scram, txlane_password, txlane_app;
EOF

	if [[ -n $tls ]]; then
		"${psql[@]}" -d txlane_test >&2 <<'EOF'
ALTER ROLE postgres PASSWORD 'txlane-tls';
CREATE ROLE txlane_auth LOGIN PASSWORD 'authpass';
CREATE SCHEMA txlane_auth AUTHORIZATION postgres;
GRANT USAGE ON SCHEMA txlane_auth TO txlane_auth;
CREATE FUNCTION txlane_auth.lookup(p_user text, OUT usename name, OUT passwd text) RETURNS record
	LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
	AS $$SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END
	      FROM pg_authid WHERE rolname = p_user AND rolcanlogin$$;
REVOKE ALL ON FUNCTION txlane_auth.lookup(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION txlane_auth.lookup(text) TO txlane_auth;
EOF
		printf 'postgres://postgres:txlane-tls@127.0.0.1:%s/txlane_test?sslmode=verify-full&sslrootcert=%s\n' "$port" "$dir/root.crt" >"$dir/dsn"
	else
		printf 'postgres://postgres@127.0.0.1:%s/txlane_test?sslmode=disable\n' "$port" >"$dir/dsn"
		printf 'postgres://txlane_reader@127.0.0.1:%s/txlane_test?sslmode=disable\n' "$port" >"$dir/reader-dsn"
	fi
	if [[ -n ${TXLANE_PG_OWNER_PID:-} ]]; then
		# Detached and with no inherited descriptors: callers wait for EOF on our stdout.
		setsid bash "$SELF" watch "$TXLANE_PG_OWNER_PID" "$dir" </dev/null >/dev/null 2>&1 &
	fi
	log "PostgreSQL $("$bindir/pg_config" --version | awk '{print $2}') with pgvector on 127.0.0.1:$port in $dir ($((SECONDS - started))s)"
	cat "$dir/dsn"
}

cmd_stop() {
	local dir=$1 run bindir
	if [[ ! -e $dir ]]; then
		return 0
	fi
	if [[ ! -f $dir/$MARKER ]]; then
		# An empty DIR is a start that failed before taking DIR over: nothing to stop.
		[[ -z $(ls -A "$dir") ]] || die "$dir was not made by pg.sh start; not touching it"
		return 0
	fi
	dir=$(cd "$dir" && pwd -P)
	[[ $dir != / ]] || die "refusing to remove /"
	run=$(run_dir "$dir")
	if [[ -f $run/data/postmaster.pid ]]; then
		if [[ -f $dir/bindir ]]; then bindir=$(cat "$dir/bindir"); else bindir=$(pg_bindir) || bindir=; fi
		if [[ -z $bindir ]] || ! as_pg "$bindir/pg_ctl" -D "$run/data" -m immediate -w -t 30 stop >/dev/null 2>&1; then
			log "warning: could not stop the server in $run/data (not running?)"
		fi
	fi
	if [[ $run != "$dir" && -d $run ]]; then rm -rf "$run"; fi
	rm -rf "$dir"
}

# cmd_watch stops the cluster in DIR once process PID has exited (see TXLANE_PG_OWNER_PID).
cmd_watch() {
	local pid=$1 dir=$2
	[[ $pid =~ ^[0-9]+$ ]] || die "watch: bad pid $pid"
	while kill -0 "$pid" 2>/dev/null; do
		sleep 1
	done
	if [[ -f $dir/$MARKER ]]; then cmd_stop "$dir"; fi
}

cmd_dsn() {
	[[ -f $1/dsn ]] || die "no cluster in $1 (run: pg.sh start $1)"
	cat "$1/dsn"
}

# cmd_reader_dsn prints the DSN of txlane_reader (a start-tls cluster has none: that login has
# no password for its hostssl scram-sha-256 line).
cmd_reader_dsn() {
	[[ -f $1/reader-dsn ]] || die "no reader DSN in $1 (a cluster made by an older pg.sh, or by start-tls): pg.sh stop $1, then pg.sh start $1"
	cat "$1/reader-dsn"
}

main() {
	(($#)) || usage
	local cmd=$1
	shift
	case $cmd in
	install)
		(($# == 0)) || usage
		cmd_install
		;;
	start | stop | dsn)
		if (($# != 1)) || [[ -z $1 ]]; then usage; fi
		"cmd_$cmd" "$1"
		;;
	reader-dsn)
		if (($# != 1)) || [[ -z $1 ]]; then usage; fi
		cmd_reader_dsn "$1"
		;;
	start-tls)
		if (($# != 1)) || [[ -z $1 ]]; then usage; fi
		cmd_start "$1" tls
		;;
	watch)
		if (($# != 2)); then usage; fi
		cmd_watch "$1" "$2"
		;;
	*) usage ;;
	esac
}

main "$@"
