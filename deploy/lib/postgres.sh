# shellcheck shell=bash
# PostgreSQL 15 (Debian package) as FerretDB's storage, when
# CHATFLOW_FERRETDB_BACKEND=postgresql. Sourced by deploy/stack.sh.
#
# A private cluster in .stack/data/postgres: trust auth, TCP on 127.0.0.1 only,
# no Unix socket. PostgreSQL refuses to run as root, so as root the server runs
# as the Debian package's `postgres` user (setpriv: the pid file holds the
# server itself, not a wrapper). `synchronous_commit=off` is the counterpart of
# the SQLite backend's synchronous=NORMAL: a crash of the server loses nothing
# committed (WAL), a power loss may lose the last ~600 ms of commits. A
# development stack; a production PostgreSQL keeps synchronous_commit=on.

PG_VERSION=15
PG_BIN="${CHATFLOW_PG_BIN:-/usr/lib/postgresql/$PG_VERSION/bin}"
PG_PORT="${CHATFLOW_PG_PORT:-5432}"
PG_DATA="$DATA_DIR/postgres"
# FerretDB's pool of PostgreSQL connections (`pool_max_conns` in its URL,
# deploy/lib/mongo.sh; FerretDB's own default is 50). FerretDB v1 holds two of
# them per update-shaped statement in flight (its query's, then the write's) and
# hangs for good once they are all held by statements waiting for their second:
# ChatFlow's processes keep Σ CHATFLOW_MONGO_UPDATE_CONCURRENCY below it.
# max_connections leaves room for it and for psql/pg_isready.
FERRETDB_PG_POOL="${CHATFLOW_FERRETDB_PG_POOL:-150}"
PG_SETTINGS=(-c "listen_addresses=$HOST" -c "unix_socket_directories=" -c "synchronous_commit=off" -c "max_connections=200")

pg_install() {
  if [[ -x "$PG_BIN/postgres" ]]; then
    say "postgres: already installed: $("$PG_BIN/postgres" --version)"
    return 0
  fi
  apt_install postgres "$PG_BIN/postgres" --version "postgresql-$PG_VERSION"
}

# The prefix that runs a command as the data folder's owner (root: the postgres user).
PG_AS=()
if [[ $(id -u) -eq 0 ]]; then PG_AS=(setpriv --reuid=postgres --regid=postgres --init-groups --); fi

pg_healthy() { port_open "$PG_PORT" && "$PG_BIN/pg_isready" -q -h "$HOST" -p "$PG_PORT" -U postgres; }

pg_up() {
  already_up postgres pg_healthy && return 0
  ensure_port_free postgres "$PG_PORT"
  if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
    say "postgres: initdb in $PG_DATA"
    mkdir -p "$PG_DATA"
    [[ $(id -u) -eq 0 ]] && chown postgres:postgres "$PG_DATA"
    chmod 700 "$PG_DATA"
    "${PG_AS[@]}" "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust --encoding=UTF8 --no-instructions \
      >"$LOG_DIR/postgres-initdb.log" 2>&1 || fail_with_log postgres-initdb "initdb failed"
  fi
  say "postgres: starting on $HOST:$PG_PORT (data in $PG_DATA)"
  start_bg postgres "${PG_AS[@]}" "$PG_BIN/postgres" -D "$PG_DATA" -p "$PG_PORT" "${PG_SETTINGS[@]}"
  wait_for postgres pg_healthy
}

# SIGTERM is PostgreSQL's "smart" shutdown (waits for clients): FerretDB is stopped first.
pg_down() { stop_proc postgres 30; }

pg_check() { pg_healthy; }
