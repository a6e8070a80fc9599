#!/usr/bin/env bash
# Worker benchmark (issue "Delivery worker", items 5, 6, 8): builds
# bin/listener (the 1 GiB copy runs it as a separate process) and the
# harness, runs every phase with the defaults (10,000-event burst over 500
# packages; 1 GiB PDF; 100,000 queued events over 5,000 packages with 20 ms
# per Salesforce call, nats.sync_always on and off, 1 and 2 worker replicas)
# and rewrites the worker block of bench/README.md. Takes about 10 minutes on
# 2 CPUs. Extra arguments go to the harness, e.g.
# `bash bench/worker/run.sh -phases calls,docmove -readme ""`.
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
go build -o "$tmp/bench-worker" ./bench/worker

rev="$(git describe --always --dirty 2>/dev/null || echo unknown)"
"$tmp/bench-worker" -listener bin/listener -label "listener at $rev" \
	-command "bash bench/worker/run.sh${*:+ $*}" "$@"
