#!/usr/bin/env bash
# Fault harness (`make chaos`, not part of `make test`): builds bin/listener,
# the harness and its NATS server, then runs the kill, nats, faults, revoke and
# workers scenarios on loopback and rewrites the chaos section of bench/README.md.
# Extra arguments go to the harness, e.g.
# `bash bench/chaos/run.sh -scenarios kill -callbacks 2000 -readme ""`.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [[ -z "${CHAOS_SKIP_BUILD:-}" ]]; then
	if command -v make >/dev/null; then
		make --no-print-directory build
	else
		go build -trimpath -o bin/listener ./cmd/listener
	fi
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/chaos" ./bench/chaos
go build -o "$tmp/natsd" ./bench/chaos/natsd

rev="$(git describe --always --dirty 2>/dev/null || echo unknown)"
"$tmp/chaos" -listener bin/listener -natsd "$tmp/natsd" -label "listener at $rev" \
	-command "bash bench/chaos/run.sh${*:+ $*}" "$@"
