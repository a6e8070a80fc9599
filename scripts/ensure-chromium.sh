#!/bin/sh
# Installs Debian's Chromium for the admin page's browser tests (chromedp)
# when it is missing and we may install packages. Without root it only
# reports: the browser tests then fail with a message saying to run this.
set -eu
if [ -x /usr/bin/chromium ]; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "ensure-chromium: /usr/bin/chromium is missing; as root run: apt-get update && apt-get install -y --no-install-recommends chromium" >&2
	exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "ensure-chromium: /usr/bin/chromium is missing and apt-get is not available; install Chromium by hand" >&2
	exit 0
fi
echo "ensure-chromium: installing chromium (for the admin page browser tests)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends chromium
