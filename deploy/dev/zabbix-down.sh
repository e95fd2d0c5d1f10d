#!/usr/bin/env bash
# Stop the frontend and server started by zabbix-up.sh (PostgreSQL keeps running).
set -u
DIR=${HEFESTUS_ZBX_DIR:-/var/tmp/hefestus-zabbix}
for name in php zabbix_server; do
  if [ -f "$DIR/$name.pid" ]; then
    pid=$(cat "$DIR/$name.pid")
    # php -S runs workers in its own session (setsid): stop the whole group.
    { kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null; } && echo "[zabbix-down] stopped $name"
    rm -f "$DIR/$name.pid"
  fi
done
# zabbix_server stops its children in the background: wait so a restart finds its socket free.
for _ in $(seq 1 30); do pgrep -x zabbix_server >/dev/null || break; sleep 1; done
exit 0
