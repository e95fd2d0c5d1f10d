#!/usr/bin/env bash
# Stop the dev Zabbix started by zabbix-up.sh: its frontend (php -S) and its zabbix_server.
# PostgreSQL, the databases, the build cache and every other process keep running.
#
#   deploy/dev/zabbix-down.sh [6.0|7.0|all]   (default: $HEFESTUS_ZBX_VERSION, else 6.0)
#
# Only PIDs read from our own pid files are stopped, and only while their command line still
# names our run directory (a pid file left by a reboot may name an unrelated process now).
set -uo pipefail
ZBX_TAG=zabbix-down
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=deploy/dev/zabbix-lib.sh
. "$HERE/zabbix-lib.sh"

want=${1:-${HEFESTUS_ZBX_VERSION:-6.0}}
case "$want" in
  all) versions=$ZBX_ALL_VERSIONS ;;
  *) zbx_layout "$want"; versions=$want ;;
esac
stop_legacy
for v in $versions; do
  run="$ZBX_ROOT/$v"
  pid=$(our_php_pid "$run")
  if [ -n "$pid" ]; then stop_tree "the $v frontend" "$pid"; fi
  pid=$(our_server_pid "$run")
  if [ -n "$pid" ]; then stop_tree "zabbix_server $v" "$pid"; fi
  # Only now that nothing of ours runs from it: stale pid and socket files.
  rm -f "$run/php.pid" "$run/zabbix_server.pid" "$run"/zabbix_server_*.sock
done
exit 0
