# shellcheck shell=bash disable=SC2034  # the layout variables are used by the sourcing scripts
# Shared by zabbix-up.sh and zabbix-down.sh: the layout of the dev Zabbix instances and the
# few process helpers that make them safe beside a real Zabbix on the same host.
#
# Safety rules kept here (issue 11):
#  - nothing under /etc is written; every file we write lives under $HEFESTUS_ZBX_DIR;
#  - a process is ours only when its pid file (under our run directory) names a live
#    process whose command line carries our own config path / document root; nothing is
#    ever found, waited on or signalled by process name;
#  - a PID is tracked as pid:starttime, so a recycled PID is never signalled.
#
# Layout (defaults; every port can be overridden from the environment):
#   version  database        trapper  web   run directory
#   6.0      hefestus_zbx60  10151    8089  $HEFESTUS_ZBX_DIR/6.0   (Debian 12 packages)
#   7.0      hefestus_zbx70  10171    8097  $HEFESTUS_ZBX_DIR/7.0   (built from Debian 13's source)
# Builds are cached in $HEFESTUS_ZBX_DIR/build-<version>/, the private en_US.UTF-8 locale
# in $HEFESTUS_ZBX_DIR/locale/.

ZBX_ROOT=${HEFESTUS_ZBX_DIR:-/var/tmp/hefestus-zabbix}
ZBX_ALL_VERSIONS="6.0 7.0"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

zlog() { printf '[%s] %s\n' "${ZBX_TAG:-zabbix}" "$*"; }
zdie() { printf '[%s] ERROR: %s\n' "${ZBX_TAG:-zabbix}" "$*" >&2; exit 1; }

# zbx_layout VERSION: sets VERSION RUN WEB_PORT SERVER_PORT DB_NAME DB_USER DB_PASS.
zbx_layout() {
  VERSION=$1
  case "$VERSION" in
    6.0) WEB_PORT=${HEFESTUS_ZBX_WEB_PORT:-8089}; SERVER_PORT=${HEFESTUS_ZBX_SERVER_PORT:-10151} ;;
    7.0) WEB_PORT=${HEFESTUS_ZBX_WEB_PORT:-8097}; SERVER_PORT=${HEFESTUS_ZBX_SERVER_PORT:-10171} ;;
    *) zdie "unknown Zabbix version '$VERSION' (use one of: $ZBX_ALL_VERSIONS)" ;;
  esac
  RUN="$ZBX_ROOT/$VERSION"
  case "$RUN" in *[!A-Za-z0-9_./+-]*) zdie "HEFESTUS_ZBX_DIR must be a plain path (letters, digits, _ . / + -): '$ZBX_ROOT'" ;; esac
  DB_NAME=${HEFESTUS_ZBX_DB:-hefestus_zbx${VERSION/./}}
  [[ $DB_NAME =~ ^[a-z_][a-z0-9_]*$ ]] || zdie "HEFESTUS_ZBX_DB must be a plain lower-case name (got '$DB_NAME')"
  DB_USER=$DB_NAME
  DB_PASS=$DB_NAME
}

# -- processes ---------------------------------------------------------------------------

# Start time (clock ticks since boot) of PID, empty when it does not exist or is a zombie
# (exited, only waiting for its parent to reap it).
proc_start() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }          # fields after "pid (comm) ", comm may hold spaces
  # shellcheck disable=SC2086
  set -- $stat
  [ "$1" != Z ] || return 0  # field 3: state
  printf '%s' "${20}"        # field 22 of stat = 20th after comm
}
proc_ppid() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  # shellcheck disable=SC2086
  set -- $stat
  printf '%s' "$2"
}
proc_pgid() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  # shellcheck disable=SC2086
  set -- $stat
  printf '%s' "$3"
}
# The command line of PID with arguments separated by newlines.
proc_args() { tr '\0' '\n' < "/proc/$1/cmdline" 2>/dev/null || true; }
# proc_has_args PID A B: PID's command line holds argument A immediately followed by B.
proc_has_args() {
  proc_args "$1" | awk -v a="$2" -v b="$3" 'prev == a && $0 == b { found = 1 } { prev = $0 } END { exit !found }'
}
# Direct children of PID (by /proc, not by name).
proc_children() {
  local p
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$(proc_ppid "$p")" = "$1" ] && printf '%s\n' "$p"
  done
  return 0
}

# pidfile_pid FILE FLAG VALUE: the PID in FILE when that process is alive and its command
# line carries "FLAG VALUE" (e.g. "-c $RUN/zabbix_server.conf"); empty otherwise.
pidfile_pid() {
  local pid
  [ -f "$1" ] || return 0
  pid=$(tr -dc '0-9' < "$1")
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 0
  proc_has_args "$pid" "$2" "$3" && printf '%s' "$pid"
  return 0
}
our_server_pid() { pidfile_pid "$1/zabbix_server.pid" -c "$1/zabbix_server.conf"; }
our_php_pid() { pidfile_pid "$1/php.pid" -t "$1/ui"; }

# Wait until none of the tracked "pid:starttime" entries is alive (a recycled PID does not count).
wait_gone() {
  local timeout=$1 entry pid start alive i; shift
  for ((i = 0; i < timeout * 5; i++)); do
    alive=0
    for entry in "$@"; do
      pid=${entry%%:*}; start=${entry#*:}
      [ -n "$(proc_start "$pid")" ] && [ "$(proc_start "$pid")" = "$start" ] && { alive=1; break; }
    done
    [ "$alive" = 0 ] && return 0
    sleep 0.2
  done
  return 1
}
# kill_tracked SIGNAL "pid:start"...: signal only the entries that are still the same process.
kill_tracked() {
  local sig=$1 entry pid start; shift
  for entry in "$@"; do
    pid=${entry%%:*}; start=${entry#*:}
    [ "$(proc_start "$pid")" = "$start" ] && kill "-$sig" "$pid" 2>/dev/null
  done
  return 0
}

# stop_tree NAME PID: stop a process we started and the children it had, by PID only.
stop_tree() {
  local name=$1 pid=$2 tracked=() c
  tracked+=("$pid:$(proc_start "$pid")")
  for c in $(proc_children "$pid"); do tracked+=("$c:$(proc_start "$c")"); done
  kill_tracked TERM "${tracked[@]}"
  if ! wait_gone 30 "${tracked[@]}"; then
    zlog "$name (pid $pid) did not stop within 30 s: SIGKILL"
    kill_tracked KILL "${tracked[@]}"
    wait_gone 5 "${tracked[@]}" || zlog "WARNING: $name (pid $pid) survived SIGKILL"
  fi
  zlog "stopped $name (pid $pid)"
}

# -- ports -------------------------------------------------------------------------------

port_listening() {
  if command -v ss >/dev/null; then
    [ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}
# PIDs that hold a listening TCP socket on PORT (only those this user may see).
port_pids() {
  command -v ss >/dev/null || return 0
  ss -Htlnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u
}
# check_port PORT WHAT OURPID: refuse when PORT is held by anything but OURPID or its children.
check_port() {
  local port=$1 what=$2 ours=$3 p foreign=()
  port_listening "$port" || return 0
  for p in $(port_pids "$port"); do
    [ -n "$ours" ] && { [ "$p" = "$ours" ] || [ "$(proc_ppid "$p")" = "$ours" ]; } && continue
    foreign+=("$p($(tr -d '\n' < "/proc/$p/comm" 2>/dev/null))")
  done
  if [ ${#foreign[@]} -gt 0 ] || [ -z "$ours" ]; then
    zdie "the $what port $port of the dev Zabbix $VERSION is held by another process${foreign[*]:+: ${foreign[*]}}.
  It is not one this script started, so it is left alone. Free the port or choose another one, e.g.
  make zabbix ZABBIX=$VERSION HEFESTUS_ZBX_$( [ "$what" = web ] && echo WEB || echo SERVER )_PORT=<free port>"
  fi
}

# -- the layout of the script before issue 11 ---------------------------------------------
# It ran one server (config $ZBX_ROOT/zabbix_server.conf, port 10051) and `php -S ... -t
# /usr/share/zabbix` from $ZBX_ROOT. Those processes are ours too: stop them (verified the
# same way) so the new layout can take over the web port and 10051 is given back.
stop_legacy() {
  local pid
  pid=$(pidfile_pid "$ZBX_ROOT/php.pid" -t /usr/share/zabbix)
  [ -n "$pid" ] && stop_tree "the frontend of the previous dev layout" "$pid"
  pid=$(pidfile_pid "$ZBX_ROOT/zabbix_server.pid" -c "$ZBX_ROOT/zabbix_server.conf")
  [ -n "$pid" ] && stop_tree "the zabbix_server of the previous dev layout" "$pid"
  rm -f "$ZBX_ROOT/php.pid" "$ZBX_ROOT/zabbix_server.pid" "$ZBX_ROOT"/zabbix_server_*.sock \
        "$ZBX_ROOT/zabbix_server.conf" "$ZBX_ROOT/zabbix_server.log" "$ZBX_ROOT/php.log"
  return 0
}
