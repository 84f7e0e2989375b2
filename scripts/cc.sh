#!/usr/bin/env bash
# cc.sh — make sure Go's C compiler is there: txlane uses cgo (pg_query_go), and without a C
# compiler Go turns cgo off and the packages do not build. As root with apt-get, gcc and
# libc6-dev are installed when missing; otherwise it says what to install and exits 1.
# `make` (before go build) and scripts/test.sh run it.
set -euo pipefail

cc=$(go env CC)
if command -v "${cc%% *}" >/dev/null 2>&1; then
	exit 0
fi
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
	echo "cc.sh: installing a C compiler for cgo (gcc, libc6-dev)" >&2
	apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev >&2
else
	echo "cc.sh: no C compiler ($cc) for cgo: install gcc and libc6-dev" >&2
	exit 1
fi
