#!/usr/bin/env bash
# ensure-clickhouse.sh makes sure a ClickHouse server binary is installed, so
# that `parley all` can start a private ClickHouse for analytics. On Debian,
# as root or with passwordless sudo, it installs the clickhouse-server package;
# otherwise it says how to install it and exits 0: Parley runs without it.
set -euo pipefail

have_clickhouse() {
	command -v clickhouse-server >/dev/null 2>&1 || command -v clickhouse >/dev/null 2>&1 ||
		[ -x /usr/sbin/clickhouse-server ] || [ -x /usr/bin/clickhouse-server ]
}

if have_clickhouse; then
	exit 0
fi

hint="ClickHouse is not installed: Parley will run without analytics. To install it on Debian or Ubuntu: sudo apt-get install clickhouse-server"

if ! command -v apt-get >/dev/null 2>&1; then
	echo "$hint (or see https://clickhouse.com/docs/install)" >&2
	exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
	sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
	sudo=(sudo -n)
else
	echo "$hint" >&2
	exit 0
fi

echo "ensure-clickhouse: installing clickhouse-server with apt-get (Parley starts its own private server; the package's system service is not used)"
# policy-rc.d keeps the package from starting its system-wide service: Parley
# and its tests run private servers on free ports.
created_policy=false
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
	"${sudo[@]}" chmod 755 /usr/sbin/policy-rc.d
	created_policy=true
fi
status=0
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q || status=$?
if [ "$status" -eq 0 ]; then
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends clickhouse-server || status=$?
fi
if $created_policy; then
	"${sudo[@]}" rm -f /usr/sbin/policy-rc.d
fi
if [ "$status" -ne 0 ]; then
	echo "ensure-clickhouse: apt-get failed (exit $status). $hint" >&2
fi
exit 0
