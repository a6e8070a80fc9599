#!/usr/bin/env bash
# Ingest benchmark (issue item 10): builds bin/listener and the harness, then
# runs every phase with the defaults (10 s per phase, 64 connections, open
# loop at 2,000 req/s) and rewrites the figures section of bench/README.md.
# Extra arguments go to the harness, e.g. `bash bench/ingest/run.sh -duration 3s -readme ""`.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [[ -z "${BENCH_SKIP_BUILD:-}" ]]; then
	if command -v make >/dev/null; then
		make --no-print-directory build
	else
		go build -trimpath -o bin/listener ./cmd/listener
	fi
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/bench-ingest" ./bench/ingest

rev="$(git describe --always --dirty 2>/dev/null || echo unknown)"
"$tmp/bench-ingest" -listener bin/listener -label "listener at $rev" \
	-command "bash bench/ingest/run.sh${*:+ $*}" "$@"
