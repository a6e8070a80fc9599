#!/usr/bin/env bash
# Validates config/salesforce with the real Salesforce CLI, offline: installs
# @salesforce/cli 2.116.6 (the last that runs on Node 20, with undici held at
# 6.x) under .tools/sfdx, converts the SFDX source to Metadata API format and
# checks every expected object and field came out (the CLI silently skips a
# misnamed file). The CLI accepts some malformed XML (a mismatched closing tag
# converted "cleanly" when tried), so the strict Go check runs first. Needs npm
# and the registry once; not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
tools="$root/.tools/sfdx"
sf="$tools/node_modules/.bin/sf"
# The CLI spawns `sf` for its own plugins: it must be on PATH.
export PATH="$tools/node_modules/.bin:$PATH"
export SF_DISABLE_TELEMETRY=true SFDX_DISABLE_TELEMETRY=true SF_AUTOUPDATE_DISABLE=true \
	SF_HIDE_RELEASE_NOTES=true SF_SKIP_NEW_VERSION_CHECK=true

go test -count=1 ./config/salesforce/

if [[ ! -x "$sf" ]]; then
	mkdir -p "$tools"
	cat >"$tools/package.json" <<'EOF'
{
  "name": "countersign-sfdx-tools",
  "private": true,
  "dependencies": { "@salesforce/cli": "2.116.6" },
  "overrides": { "undici": "6.21.3" }
}
EOF
	(cd "$tools" && npm install --no-audit --no-fund --loglevel=error)
fi
"$sf" --version

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
(cd config/salesforce && "$sf" project convert source --output-dir "$out/mdapi" >"$out/convert.log" 2>&1) || {
	cat "$out/convert.log"
	echo "sfdx-check: conversion failed" >&2
	exit 1
}

fail=0
expect() { # file, then strings that must appear in it
	local f="$out/mdapi/$1"
	shift
	if [[ ! -f "$f" ]]; then
		echo "sfdx-check: missing $1" >&2
		fail=1
		return
	fi
	for s in "$@"; do
		if ! grep -q -- "$s" "$f"; then
			echo "sfdx-check: $(basename "$f") lacks $s" >&2
			fail=1
		fi
	done
}
expect objects/OneSpan_Transaction__c.object \
	"<fullName>Package_Id__c</fullName>" "<fullName>Status__c</fullName>" "<fullName>Last_Event__c</fullName>" \
	"<fullName>Last_Event_At__c</fullName>" "<fullName>Completed_At__c</fullName>" "<label>OneSpan Transaction</label>"
expect objects/OneSpan_Event__c.object \
	"<fullName>Event_Key__c</fullName>" "<fullName>Transaction__c</fullName>" "<fullName>Event_Name__c</fullName>" \
	"<fullName>Occurred_At__c</fullName>" "<fullName>Session_User__c</fullName>" "<fullName>Document_Id__c</fullName>" \
	"<fullName>Message__c</fullName>" "<referenceTo>OneSpan_Transaction__c</referenceTo>"
expect objects/ContentVersion.object "<fullName>OneSpan_Document_Key__c</fullName>"
expect permissionsets/Countersign_Integration.permissionset "<field>OneSpan_Transaction__c.Package_Id__c</field>"
expect package.xml "<members>OneSpan_Transaction__c</members>" "<members>OneSpan_Event__c</members>" \
	"<members>ContentVersion.OneSpan_Document_Key__c</members>" "<members>Countersign_Integration</members>"
if [[ $fail -ne 0 ]]; then
	echo "converted files:" >&2
	(cd "$out/mdapi" && find . -type f | sort) >&2
	exit 1
fi
echo "sfdx-check: config/salesforce converts cleanly; every object, field and the permission set is present"
