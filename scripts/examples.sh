#!/usr/bin/env bash
# examples.sh — install what the examples need that Go does not: the npm packages of
# examples/prisma-drizzle (exactly as package-lock.json pins them, with `npm ci`) and its
# generated Prisma client (`prisma generate`). Idempotent and fast when nothing changed:
# `npm ci` runs only when node_modules is missing or older than package-lock.json, and
# `prisma generate` only when the generated client does not match prisma/schema.prisma.
#
# The examples' Go tests (examples/examples_test.go) run this script themselves; run it by
# hand to try the Node example:  bash scripts/examples.sh && node examples/prisma-drizzle/main.mjs
#
# Prisma's CLI insists that a schema-engine binary exists before it generates a client, and
# would download one; `prisma generate` never runs it, so PRISMA_SCHEMA_ENGINE_BINARY points at
# an existing stand-in (/bin/false, so that a use would fail loudly) unless already set.
# `prisma db push` and `prisma migrate` do need the real engine: the examples create their
# tables with examples/setup.sql instead.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=examples/prisma-drizzle

for tool in node npm; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "examples.sh: $tool is not on PATH: install Node.js 20.19 or newer with npm" >&2
		exit 1
	fi
done

cd "$dir"

# npm writes node_modules/.package-lock.json after every install; it is older than
# package-lock.json when the lock file changed since.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
	echo "examples.sh: npm ci in $dir" >&2
	start=$SECONDS
	npm ci --no-audit --no-fund --loglevel=error >&2
	echo "examples.sh: npm ci took $((SECONDS - start))s" >&2
fi

# The generated client keeps a copy of the schema it was generated from.
if ! cmp -s prisma/schema.prisma node_modules/.prisma/client/schema.prisma; then
	echo "examples.sh: prisma generate in $dir" >&2
	PRISMA_SCHEMA_ENGINE_BINARY=${PRISMA_SCHEMA_ENGINE_BINARY:-$(type -P false)} \
		CHECKPOINT_DISABLE=1 PRISMA_HIDE_UPDATE_MESSAGE=1 \
		./node_modules/.bin/prisma generate >&2
fi
