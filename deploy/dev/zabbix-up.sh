#!/usr/bin/env bash
# Bring up a private dev Zabbix (PostgreSQL database + server + frontend/API) for `make demo`
# and `make test`, safely beside any real Zabbix on the same host.
#
#   deploy/dev/zabbix-up.sh [6.0|7.0]      (default: $HEFESTUS_ZBX_VERSION, else 6.0)
#
#   version  source                                  database        trapper  web (127.0.0.1)
#   6.0      Debian 12 packages (6.0.14)             hefestus_zbx60  10151    8089
#   7.0      built from Debian 13's source package   hefestus_zbx70  10171    8097
#
# Each version has its own run directory ($HEFESTUS_ZBX_DIR/<version>: server config, pid,
# log and socket files, the frontend copy in ui/ with its own ui/conf/zabbix.conf.php), its
# own database and role in the host's PostgreSQL cluster (marked by a comment, so a database
# of that name that this script did not create is refused, never dropped). Both listen on
# 127.0.0.1 only. Nothing under /etc is written: the frontend's en_US.UTF-8 locale is
# compiled into $HEFESTUS_ZBX_DIR/locale and given to our php only (LOCPATH), and when this
# script installs the Zabbix packages itself, a temporary /usr/sbin/policy-rc.d (only if the
# host has none) keeps their services from starting. Nothing is found, waited on or
# signalled by process name; a port held by anything this script did not start makes it
# stop with an error. Idempotent: installs, builds and loads only what is missing, and exits
# within a second or two when the instance is up. Stop it with zabbix-down.sh.
#
# Env: HEFESTUS_ZBX_DIR (default /var/tmp/hefestus-zabbix), HEFESTUS_ZBX_WEB_PORT,
#      HEFESTUS_ZBX_SERVER_PORT (trapper), HEFESTUS_ZBX_DB (database and role name),
#      HEFESTUS_ZBX_DEBIAN_MIRROR (where 7.0's source comes from; default: this host's mirror).
set -euo pipefail
ZBX_TAG=zabbix-up
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=deploy/dev/zabbix-lib.sh
. "$HERE/zabbix-lib.sh"

zbx_layout "${1:-${HEFESTUS_ZBX_VERSION:-6.0}}"
API="http://127.0.0.1:${WEB_PORT}/api_jsonrpc.php"
[ "$WEB_PORT" != "$SERVER_PORT" ] || zdie "the web and trapper ports must differ (both $WEB_PORT)"
mkdir -p "$RUN"
# One zabbix-up.sh per version at a time (a second one waits rather than build or load twice).
exec 9>"$ZBX_ROOT/.up-$VERSION.lock"
flock -n 9 || { zlog "another zabbix-up.sh $VERSION is running: waiting for it"; flock 9; }

api() { curl -s -m 10 -H 'Content-Type: application/json-rpc' -d "$1" "$API" 2>/dev/null || true; }
api_version() { api '{"jsonrpc":"2.0","method":"apiinfo.version","params":{},"id":1}' | sed -n 's/.*"result":"\([^"]*\)".*/\1/p'; }
api_login_ok() {
  api '{"jsonrpc":"2.0","method":"user.login","params":{"username":"Admin","password":"zabbix"},"id":2}' \
    | grep -q '"result"'
}
report_up() {
  zlog "Zabbix $1 is up"
  zlog "  UI:      http://127.0.0.1:$WEB_PORT/   (login Admin / zabbix)"
  zlog "  API:     $API"
  zlog "  trapper: 127.0.0.1:$SERVER_PORT   database: $DB_NAME   files: $RUN"
}
is_up() {
  local v
  [ -n "$(our_server_pid "$RUN")" ] && [ -n "$(our_php_pid "$RUN")" ] || return 1
  v=$(api_version)
  case "$v" in "$VERSION".*) ;; *) return 1 ;; esac
  api_login_ok || return 1
  UP_VERSION=$v
}

# --- 0. ports (and the processes of the layout before issue 11) --------------------------
stop_legacy
check_port "$WEB_PORT" web "$(our_php_pid "$RUN")"
check_port "$SERVER_PORT" trapper "$(our_server_pid "$RUN")"
if is_up; then report_up "$UP_VERSION"; exit 0; fi

# --- 1. packages (only what is missing) ----------------------------------------------------
installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
POLICY=/usr/sbin/policy-rc.d
POLICY_MARK="# hefestus dev zabbix-up.sh: temporary, removed after its apt-get install"
remove_policy() {
  if [ -f "$POLICY" ] && grep -qxF "$POLICY_MARK" "$POLICY"; then $SUDO rm -f "$POLICY"; fi
}
apt_install() {
  local created=""
  zlog "installing $*"
  # Packaged Zabbix services must not start (they would use 10050/10051 and /etc/zabbix):
  # a policy-rc.d for the time of this install, only when the host has none of its own.
  if [ ! -e "$POLICY" ]; then
    # shellcheck disable=SC2016  # "$@" and "$a" belong to the policy script
    printf '#!/bin/sh\n%s\nfor a in "$@"; do case "$a" in zabbix-*) exit 101;; esac; done\nexit 0\n' \
      "$POLICY_MARK" | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 0755 "$POLICY"; created=1
    trap remove_policy EXIT
  fi
  $SUDO apt-get update -qq
  # 9>&-: a service the install starts (PostgreSQL, without systemd) must not inherit our lock.
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 9>&-
  [ -z "$created" ] || { remove_policy; trap - EXIT; }
}
need=()
for p in postgresql curl php-cli php-pgsql php-gd php-bcmath php-mbstring php-xml zabbix-agent locales iproute2; do
  installed "$p" || need+=("$p")          # zabbix-agent carries Debian 12's zabbix_sender
done
if [ "$VERSION" = 6.0 ]; then
  for p in zabbix-server-pgsql zabbix-frontend-php; do installed "$p" || need+=("$p"); done
fi
if [ "$VERSION" = 7.0 ] && ! ls "$ZBX_ROOT"/build-7.0.*/.complete >/dev/null 2>&1; then
  for p in gcc make pkg-config xz-utils libpq-dev libevent-dev libpcre2-dev libcurl4-openssl-dev libxml2-dev; do
    installed "$p" || need+=("$p")
  done
fi
[ ${#need[@]} -eq 0 ] || apt_install "${need[@]}"

# --- 2. PostgreSQL (the host's cluster; our own role and database in it) -----------------
PGVER=$(pg_lsclusters -h 2>/dev/null | awk 'NR==1{print $1}')
if [ -z "$PGVER" ]; then
  PGVER=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -n | tail -1)
  zlog "creating PostgreSQL $PGVER cluster"
  $SUDO pg_createcluster "$PGVER" main >/dev/null 9>&-
fi
PGCLUSTER=$(pg_lsclusters -h | awk 'NR==1{print $2}')
PGPORT=$(pg_lsclusters -h | awk 'NR==1{print $3}')
if ! pg_lsclusters -h | awk 'NR==1{print $4}' | grep -q online; then
  zlog "starting PostgreSQL $PGVER/$PGCLUSTER"
  $SUDO pg_ctlcluster "$PGVER" "$PGCLUSTER" start 9>&-   # the postmaster must not inherit our lock
fi
if [ "$(id -u)" = 0 ]; then
  psql_su() { runuser -u postgres -- env PGOPTIONS='-c client_min_messages=warning' psql -p "$PGPORT" -XtAq "$@"; }
else
  psql_su() { sudo -u postgres env PGOPTIONS='-c client_min_messages=warning' psql -p "$PGPORT" -XtAq "$@"; }
fi
psql_db() { PGOPTIONS='-c client_min_messages=warning' PGPASSWORD=$DB_PASS psql -h 127.0.0.1 -p "$PGPORT" -U "$DB_USER" -d "$DB_NAME" -XtAq "$@"; }

# --- 3. the 7.0 build (cached; a build is finished only when its .complete stamp exists) --
debian_mirror() {
  local m
  m=${HEFESTUS_ZBX_DEBIAN_MIRROR:-}
  [ -n "$m" ] || m=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | tr ' ' '\n' | grep -E '^https?://' \
                     | grep -v -- '-security' | head -1)
  [ -n "$m" ] || m=$(grep -hsE '^deb +(\[[^]]*\] +)?https?://' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
                     | sed -E 's/^deb +(\[[^]]*\] +)?//' | awk '{print $1}' | grep -v -- '-security' | head -1)
  printf '%s' "${m:-http://deb.debian.org/debian}"
}
build_70() {
  local dl="$ZBX_ROOT/download-7.0" apt="$ZBX_ROOT/download-7.0/apt" orig src b ver
  local aptopts=(-o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache"
                 -o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/sources.list.d"
                 -o "APT::Sandbox::User=root")
  orig=$(find "$dl" -maxdepth 1 -name 'zabbix_7.0.*+dfsg.orig.tar.xz' 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$orig" ]; then
    zlog "downloading Zabbix 7.0's source package from Debian 13 (trixie), about 36 MB"
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/sources.list.d"
    # A private sources list, lists and cache: the system's apt configuration is not touched.
    # debian-archive-keyring of Debian 12 carries trixie's signing keys.
    printf 'deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s trixie main\n' \
      "$(debian_mirror)" > "$apt/sources.list"
    apt-get "${aptopts[@]}" update -qq >/dev/null || zdie "apt-get update of the private trixie sources list failed"
    (cd "$dl" && apt-get "${aptopts[@]}" source --download-only -qq zabbix >/dev/null) \
      || zdie "downloading the zabbix source package from trixie failed"
    orig=$(find "$dl" -maxdepth 1 -name 'zabbix_7.0.*+dfsg.orig.tar.xz' | sort -V | tail -1)
    [ -n "$orig" ] || zdie "trixie's zabbix source package is not a 7.0 (found: $(ls "$dl"))"
  fi
  ver=$(basename "$orig"); ver=${ver#zabbix_}; ver=${ver%%+dfsg*}
  b="$ZBX_ROOT/build-$ver"
  rm -rf "$b"                           # whatever is there is unfinished (no .complete)
  mkdir -p "$b"
  zlog "building Zabbix $ver server in $b (2-4 minutes on 2 cores, once; cached)"
  tar --no-same-owner -xJf "$orig" -C "$b"
  src=$(find "$b" -mindepth 1 -maxdepth 1 -type d -name 'zabbix-*' | head -1)
  [ -n "$src" ] && mv "$src" "$b/src"
  (cd "$b/src" && ./configure -q --enable-server --with-postgresql --with-libcurl --with-libxml2 \
      --with-libpcre2 --prefix="$b/prefix" >"$b/configure.log" 2>&1) \
    || { tail -20 "$b/configure.log"; zdie "configure failed (log: $b/configure.log)"; }
  (cd "$b/src" && make -j"$(nproc)" >"$b/make.log" 2>&1 && make install >>"$b/make.log" 2>&1) \
    || { tail -20 "$b/make.log"; zdie "make failed (log: $b/make.log)"; }
  "$b/prefix/sbin/zabbix_server" -V | head -1 | grep -q "$ver" || zdie "the built zabbix_server is not $ver"
  for f in schema images data; do [ -s "$b/src/database/postgresql/$f.sql" ] || zdie "$f.sql missing"; done
  [ -f "$b/src/ui/api_jsonrpc.php" ] || zdie "ui/ missing from the source"
  echo "$ver" > "$b/.complete"
}
if [ "$VERSION" = 7.0 ]; then
  stamp=$(find "$ZBX_ROOT" -maxdepth 2 -path "$ZBX_ROOT/build-7.0.*/.complete" 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$stamp" ]; then build_70
    stamp=$(find "$ZBX_ROOT" -maxdepth 2 -path "$ZBX_ROOT/build-7.0.*/.complete" | sort -V | tail -1)
  fi
  BUILD=$(dirname "$stamp")
  SERVER_BIN="$BUILD/prefix/sbin/zabbix_server"
  SQL_DIR="$BUILD/src/database/postgresql"
  UI_SRC="$BUILD/src/ui"
  UI_STAMP="build:$(cat "$stamp")"
  sql_part() { cat "$SQL_DIR/$1.sql"; }
else
  SERVER_BIN=$(command -v zabbix_server || echo /usr/sbin/zabbix_server)
  UI_SRC=/usr/share/zabbix
  UI_STAMP="deb:$(dpkg-query -W -f='${Version}' zabbix-frontend-php)"
  sql_part() { zcat "/usr/share/zabbix-server-pgsql/$1.sql.gz"; }
fi

# --- 4. database: ours only when its comment says so --------------------------------------
# The comment "hefestus-dev <version> <run dir> <state>" marks a database this script created
# for this run directory; any other database of that name is someone else's and left alone.
DB_MARK="hefestus-dev $VERSION $RUN"
db_comment() {
  psql_su -c "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = '$DB_NAME'"
}
db_exists() { [ -n "$(psql_su -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" ]; }
if [ "$(db_comment)" != "$DB_MARK loaded" ]; then
  if db_exists; then
    case "$(db_comment)" in
      "$DB_MARK "*) ;;                  # ours, from a load that did not finish: redo it
      *) zdie "database '$DB_NAME' exists but was not created by this script for $RUN (its comment: '$(db_comment)'); it is left alone. Set HEFESTUS_ZBX_DB to another name." ;;
    esac
  fi
  pid=$(our_server_pid "$RUN"); [ -z "$pid" ] || stop_tree zabbix_server "$pid"
  zlog "creating database $DB_NAME and loading the Zabbix $VERSION schema (about 30 s)"
  psql_su -c "SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER'" | grep -q 1 || \
    psql_su -c "CREATE ROLE $DB_USER LOGIN PASSWORD '$DB_PASS'"
  psql_su -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null
  psql_su -c "CREATE DATABASE $DB_NAME OWNER $DB_USER ENCODING 'UTF8' TEMPLATE template0" >/dev/null
  psql_su -c "COMMENT ON DATABASE $DB_NAME IS '$DB_MARK loading'"
  for part in schema images data; do
    sql_part "$part" | psql_db -v ON_ERROR_STOP=1 >/dev/null || zdie "loading $part.sql failed"
  done
  psql_su -c "COMMENT ON DATABASE $DB_NAME IS '$DB_MARK loaded'"
fi

# --- 5. a private en_US.UTF-8 locale (the frontend warns on every page without one) ------
# Compiled with localedef into $ZBX_ROOT/locale and found through LOCPATH by our php only:
# /etc/locale.gen and the system's locale archive stay as they are.
LOCALES="$ZBX_ROOT/locale"
if [ ! -f "$LOCALES/en_US.utf8/LC_CTYPE" ]; then
  mkdir -p "$LOCALES"; rm -rf "$LOCALES/new.$$"
  # localedef warns about (harmless) details of the en_US source and may exit 1 after writing it.
  localedef -i en_US -f UTF-8 "$LOCALES/new.$$" 2>/dev/null || [ -f "$LOCALES/new.$$/LC_CTYPE" ] \
    || zdie "localedef en_US.UTF-8 failed (is the 'locales' package installed?)"
  mv -T "$LOCALES/new.$$" "$LOCALES/en_US.utf8" 2>/dev/null || rm -rf "$LOCALES/new.$$"
fi

# --- 6. our own copy of the frontend, reading its own conf/zabbix.conf.php ---------------
if [ "$(cat "$RUN/ui/.hefestus-frontend" 2>/dev/null)" != "$UI_STAMP" ]; then
  pid=$(our_php_pid "$RUN"); [ -z "$pid" ] || stop_tree php "$pid"
  zlog "copying the $VERSION frontend from $UI_SRC to $RUN/ui"
  rm -rf "$RUN/ui.new"; cp -a "$UI_SRC" "$RUN/ui.new"
  # Relative symlinks (fonts) pointed into the source tree: make them absolute.
  while IFS= read -r -d '' link; do
    ln -sfn "$(readlink -m "$UI_SRC/${link#"$RUN/ui.new/"}")" "$link"
  done < <(find "$RUN/ui.new" -type l -print0)
  # Debian's frontend reads /etc/zabbix/zabbix.conf.php; ours reads its own conf/ (as upstream).
  sed -i "s|'/etc/zabbix/zabbix.conf.php'|__DIR__.'/../../../conf/zabbix.conf.php'|" \
    "$RUN/ui.new/include/classes/core/CConfigFile.php"
  if grep -rIl --include='*.php' '/etc/zabbix' "$RUN/ui.new" >/dev/null; then
    zdie "the frontend copy still refers to /etc/zabbix: $(grep -rIl --include='*.php' '/etc/zabbix' "$RUN/ui.new" | head -3)"
  fi
  echo "$UI_STAMP" > "$RUN/ui.new/.hefestus-frontend"
  rm -rf "$RUN/ui"; mv "$RUN/ui.new" "$RUN/ui"
fi
# The configuration from this version's own template, so its keys are the ones it expects.
conf_new="$RUN/ui/conf/zabbix.conf.php.new"
sed -E \
  -e "s/^(\\\$DB\['TYPE'\][[:space:]]*=).*/\1 'POSTGRESQL';/" \
  -e "s/^(\\\$DB\['SERVER'\][[:space:]]*=).*/\1 '127.0.0.1';/" \
  -e "s/^(\\\$DB\['PORT'\][[:space:]]*=).*/\1 '$PGPORT';/" \
  -e "s/^(\\\$DB\['DATABASE'\][[:space:]]*=).*/\1 '$DB_NAME';/" \
  -e "s/^(\\\$DB\['USER'\][[:space:]]*=).*/\1 '$DB_USER';/" \
  -e "s/^(\\\$DB\['PASSWORD'\][[:space:]]*=).*/\1 '$DB_PASS';/" \
  -e "s/^(\\\$ZBX_SERVER_NAME[[:space:]]*=).*/\1 'hefestus-dev $VERSION';/" \
  "$RUN/ui/conf/zabbix.conf.php.example" > "$conf_new"
printf "\n// hefestus dev: the server this frontend talks to.\n\$ZBX_SERVER = '127.0.0.1';\n\$ZBX_SERVER_PORT = '%s';\n" \
  "$SERVER_PORT" >> "$conf_new"
[ "$(grep -cE "^\\\$DB\['(TYPE|SERVER|PORT|DATABASE|USER|PASSWORD)'\].*'($DB_NAME|$DB_PASS|POSTGRESQL|127.0.0.1|$PGPORT)';" "$conf_new")" = 6 ] \
  || zdie "could not fill $conf_new from the template"
if cmp -s "$conf_new" "$RUN/ui/conf/zabbix.conf.php"; then rm -f "$conf_new"; else mv "$conf_new" "$RUN/ui/conf/zabbix.conf.php"; fi

# --- 7. server -----------------------------------------------------------------------------
# Standalone (no HANodeName): the database is this instance's alone, and a named HA node that
# was killed (reboot, OOM) refuses to start again for the failover delay ("found active
# duplicate node"), while a standalone one restarts at once.
conf_new="$RUN/zabbix_server.conf.new"
cat > "$conf_new" <<CONF
# Written by deploy/dev/zabbix-up.sh: the dev Zabbix $VERSION of Hefestus.
LogFile=$RUN/zabbix_server.log
LogFileSize=10
PidFile=$RUN/zabbix_server.pid
SocketDir=$RUN
ListenIP=127.0.0.1
ListenPort=$SERVER_PORT
DBHost=127.0.0.1
DBPort=$PGPORT
DBName=$DB_NAME
DBUser=$DB_USER
DBPassword=$DB_PASS
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
CONF
[ "$(id -u)" != 0 ] || printf 'AllowRoot=1\nUser=root\n' >> "$conf_new"
server_pid=$(our_server_pid "$RUN")
if ! cmp -s "$conf_new" "$RUN/zabbix_server.conf"; then
  [ -z "$server_pid" ] || { zlog "server configuration changed: restarting"; stop_tree zabbix_server "$server_pid"; server_pid=""; }
  mv "$conf_new" "$RUN/zabbix_server.conf"
else
  rm -f "$conf_new"
fi
if [ -z "$server_pid" ]; then
  check_port "$SERVER_PORT" trapper ""
  zlog "starting zabbix_server $VERSION (trapper 127.0.0.1:$SERVER_PORT)"
  rm -f "$RUN/zabbix_server.pid" "$RUN"/zabbix_server_*.sock
  "$SERVER_BIN" -c "$RUN/zabbix_server.conf" 9>&-     # the daemon must not inherit our lock
fi

# --- 8. frontend / API ----------------------------------------------------------------------
if [ -z "$(our_php_pid "$RUN")" ]; then
  check_port "$WEB_PORT" web ""
  zlog "starting the $VERSION frontend on 127.0.0.1:$WEB_PORT"
  LOCPATH="$LOCALES:/usr/lib/locale" PHP_CLI_SERVER_WORKERS=4 setsid nohup php \
    -d post_max_size=16M -d upload_max_filesize=2M -d max_execution_time=300 \
    -d max_input_time=300 -d memory_limit=256M -d date.timezone=UTC \
    -S "127.0.0.1:$WEB_PORT" -t "$RUN/ui" >"$RUN/php.log" 2>&1 < /dev/null 9>&- &
  echo $! > "$RUN/php.pid"
fi

# --- 9. wait until usable ----------------------------------------------------------------------
why="not up within 90 s"
for i in $(seq 1 90); do
  if is_up; then report_up "$UP_VERSION"; exit 0; fi
  if [ "$i" -ge 5 ] && [ -z "$(our_server_pid "$RUN")" ]; then why="zabbix_server exited"; break; fi
  if [ "$i" -ge 5 ] && [ -z "$(our_php_pid "$RUN")" ]; then why="php exited"; break; fi
  sleep 1
done
echo "--- $RUN/php.log"; tail -n 20 "$RUN/php.log" 2>/dev/null || true
echo "--- $RUN/zabbix_server.log"; tail -n 30 "$RUN/zabbix_server.log" 2>/dev/null || true
zdie "Zabbix $VERSION did not come up: $why (api version='$(api_version)')"
