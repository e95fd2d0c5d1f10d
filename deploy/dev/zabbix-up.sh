#!/usr/bin/env bash
# Bring up a local Zabbix 6.0 (PostgreSQL + server + frontend/API) for `make demo`
# and `make test`. Idempotent: installs only what is missing, starts only what is
# not running, and exits quickly when everything is already up.
#
# Env: HEFESTUS_ZBX_DIR (state, logs, pid files; default /var/tmp/hefestus-zabbix),
#      HEFESTUS_ZBX_WEB_PORT (frontend/API, default 8089),
#      HEFESTUS_ZBX_SERVER_PORT (trapper port, default 10051).
set -euo pipefail

DIR=${HEFESTUS_ZBX_DIR:-/var/tmp/hefestus-zabbix}
WEB_PORT=${HEFESTUS_ZBX_WEB_PORT:-8089}
SERVER_PORT=${HEFESTUS_ZBX_SERVER_PORT:-10051}
API="http://127.0.0.1:${WEB_PORT}/api_jsonrpc.php"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
log() { printf '[zabbix-up] %s\n' "$*"; }
die() { printf '[zabbix-up] ERROR: %s\n' "$*" >&2; exit 1; }

# --- 1. packages ---------------------------------------------------------------------
need=()
command -v zabbix_server >/dev/null || need+=(zabbix-server-pgsql)
[ -f /usr/share/zabbix/api_jsonrpc.php ] || need+=(zabbix-frontend-php)
php -m 2>/dev/null | grep -qi '^pgsql$' || need+=(php-pgsql)
command -v php >/dev/null || need+=(php-cli)
command -v zabbix_sender >/dev/null || need+=(zabbix-agent)
command -v pg_ctlcluster >/dev/null || need+=(postgresql)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${need[@]}" php-cli php-pgsql >/dev/null
fi
# Debian may auto-start its own zabbix-server service on install: ours runs from our config.
if command -v systemctl >/dev/null && systemctl is-active --quiet zabbix-server 2>/dev/null; then
  $SUDO systemctl stop zabbix-server || true
fi
$SUDO mkdir -p "$DIR"; $SUDO chmod 0777 "$DIR"

# --- 2. PostgreSQL -------------------------------------------------------------------
PGVER=$(pg_lsclusters -h 2>/dev/null | awk 'NR==1{print $1}')
if [ -z "$PGVER" ]; then
  PGVER=$(ls /usr/lib/postgresql | sort -n | tail -1)
  log "creating PostgreSQL $PGVER cluster"
  $SUDO pg_createcluster "$PGVER" main >/dev/null
fi
PGCLUSTER=$(pg_lsclusters -h | awk 'NR==1{print $2}')
PGPORT=$(pg_lsclusters -h | awk 'NR==1{print $3}')
if ! pg_lsclusters -h | awk 'NR==1{print $4}' | grep -q online; then
  log "starting PostgreSQL $PGVER/$PGCLUSTER"
  $SUDO pg_ctlcluster "$PGVER" "$PGCLUSTER" start
fi
psql_su() { $SUDO -u postgres psql -p "$PGPORT" -XtAq "$@" 2>/dev/null || runuser -u postgres -- psql -p "$PGPORT" -XtAq "$@"; }
if [ "$(id -u)" = 0 ]; then psql_su() { runuser -u postgres -- psql -p "$PGPORT" -XtAq "$@"; }; fi
psql_su -c "SELECT 1 FROM pg_roles WHERE rolname='zabbix'" | grep -q 1 || \
  psql_su -c "CREATE ROLE zabbix LOGIN PASSWORD 'zabbix'"
psql_z() { PGPASSWORD=zabbix psql -h 127.0.0.1 -p "$PGPORT" -U zabbix -d zabbix -XtAq "$@"; }
loaded=$(psql_su -d zabbix -c "SELECT count(*) FROM users" 2>/dev/null || echo none)
if [ "$loaded" = none ] || [ "$loaded" = 0 ] || \
   [ -z "$(psql_su -d zabbix -c "SELECT 1 FROM dbversion" 2>/dev/null)" ]; then
  log "creating the zabbix database and loading the schema (about 30 s)"
  pkill -f "zabbix_server -c $DIR/zabbix_server.conf" 2>/dev/null || true
  psql_su -c "DROP DATABASE IF EXISTS zabbix" >/dev/null
  psql_su -c "CREATE DATABASE zabbix OWNER zabbix ENCODING 'UTF8' TEMPLATE template0" >/dev/null
  for part in schema images data; do
    zcat "/usr/share/zabbix-server-pgsql/$part.sql.gz" | psql_z -v ON_ERROR_STOP=1 >/dev/null \
      || die "loading $part.sql failed"
  done
  # A marker that the load finished (a partial load is redone on the next run).
  psql_z -c "SELECT 1 FROM dbversion" | grep -q 1 || die "schema load incomplete"
fi

# --- 3. server -----------------------------------------------------------------------
cat > "$DIR/zabbix_server.conf" <<CONF
LogFile=$DIR/zabbix_server.log
LogFileSize=10
PidFile=$DIR/zabbix_server.pid
SocketDir=$DIR
ListenPort=$SERVER_PORT
DBHost=127.0.0.1
DBPort=$PGPORT
DBName=zabbix
DBUser=zabbix
DBPassword=zabbix
CacheUpdateFrequency=5
StartPollers=2
StartPollersUnreachable=1
StartTrappers=5
StartPingers=1
StartDiscoverers=1
StartHTTPPollers=1
StartPreprocessors=2
StartDBSyncers=2
StartEscalators=1
StartAlerters=1
Timeout=10
AllowRoot=1
User=root
CONF
# A stale pid file after a reboot may name an unrelated process: check the command too.
server_running() {
  [ -f "$DIR/zabbix_server.pid" ] || return 1
  [ "$(ps -p "$(cat "$DIR/zabbix_server.pid")" -o comm= 2>/dev/null)" = zabbix_server ]
}
if ! server_running; then
  # Children of a server that is shutting down still hold its control socket: wait, then force.
  for _ in $(seq 1 30); do pgrep -x zabbix_server >/dev/null || break; sleep 1; done
  pkill -9 -x zabbix_server 2>/dev/null && sleep 1
  log "starting zabbix_server (port $SERVER_PORT)"
  rm -f "$DIR/zabbix_server.pid"
  zabbix_server -c "$DIR/zabbix_server.conf"
fi

# --- 4. frontend / API ---------------------------------------------------------------
$SUDO tee /etc/zabbix/zabbix.conf.php >/dev/null <<PHP
<?php
\$DB['TYPE'] = 'POSTGRESQL';
\$DB['SERVER'] = '127.0.0.1';
\$DB['PORT'] = '$PGPORT';
\$DB['DATABASE'] = 'zabbix';
\$DB['USER'] = 'zabbix';
\$DB['PASSWORD'] = 'zabbix';
\$DB['SCHEMA'] = '';
\$DB['ENCRYPTION'] = false;
\$DB['KEY_FILE'] = '';
\$DB['CERT_FILE'] = '';
\$DB['CA_FILE'] = '';
\$DB['VERIFY_HOST'] = false;
\$DB['CIPHER_LIST'] = '';
\$DB['VAULT_URL'] = '';
\$DB['VAULT_DB_PATH'] = '';
\$DB['VAULT_TOKEN'] = '';
\$DB['DOUBLE_IEEE754'] = true;
\$ZBX_SERVER = '127.0.0.1';
\$ZBX_SERVER_PORT = '$SERVER_PORT';
\$ZBX_SERVER_NAME = 'hefestus-dev';
\$IMAGE_FORMAT_DEFAULT = IMAGE_FORMAT_PNG;
PHP
api() { curl -s -m 10 -H 'Content-Type: application/json-rpc' -d "$1" "$API" 2>/dev/null || true; }
version() { api '{"jsonrpc":"2.0","method":"apiinfo.version","params":{},"id":1}' | sed -n 's/.*"result":"\([^"]*\)".*/\1/p'; }
if [ -z "$(version)" ]; then
  log "starting the frontend on 127.0.0.1:$WEB_PORT"
  [ -f "$DIR/php.pid" ] && { kill -- "-$(cat "$DIR/php.pid")" 2>/dev/null || true; }
  PHP_CLI_SERVER_WORKERS=4 setsid nohup php \
    -d post_max_size=16M -d upload_max_filesize=2M -d max_execution_time=300 \
    -d max_input_time=300 -d memory_limit=256M -d date.timezone=UTC \
    -S "127.0.0.1:$WEB_PORT" -t /usr/share/zabbix >"$DIR/php.log" 2>&1 < /dev/null &
  echo $! > "$DIR/php.pid"
fi

# --- 5. wait until usable ------------------------------------------------------------
for _ in $(seq 1 60); do
  v=$(version)
  login=$(api '{"jsonrpc":"2.0","method":"user.login","params":{"username":"Admin","password":"zabbix"},"id":2}')
  if [ -n "$v" ] && echo "$login" | grep -q '"result"' && server_running; then
    log "Zabbix $v is up"
    log "  UI:    http://127.0.0.1:$WEB_PORT/   (login Admin / zabbix)"
    log "  API:   $API"
    log "  server trapper port $SERVER_PORT; logs and pid files in $DIR"
    exit 0
  fi
  sleep 1
done
echo "--- php.log"; tail -n 20 "$DIR/php.log" 2>/dev/null || true
echo "--- zabbix_server.log"; tail -n 30 "$DIR/zabbix_server.log" 2>/dev/null || true
die "Zabbix did not come up within 60 s (api version='$(version)')"
