#!/bin/bash
# Entrypoint of the local database stand-ins: Oracle's MySQL (CMD mysqld,
# for mysql:9.7) and MariaDB (CMD mariadbd, for mariadb:11.8).
#
# Follows the official MySQL image's contract:
#   MYSQL_ROOT_PASSWORD | MYSQL_ALLOW_EMPTY_PASSWORD | MYSQL_RANDOM_ROOT_PASSWORD
#   MYSQL_ROOT_HOST (default %), MYSQL_DATABASE, MYSQL_USER, MYSQL_PASSWORD,
#   MYSQL_INITDB_SKIP_TZINFO, and the *_FILE variants of the secrets.
#   /docker-entrypoint-initdb.d/*.sh|*.sql|*.sql.gz|.xz|.zst|.bz2 run once,
#   on the first start (empty data directory), in sorted order.
# First start: the server initialises its data directory, then a temporary
# server with --skip-networking on its own socket (so TCP health checks fail until the
# real server runs) to set passwords/users and run the init files, then the
# real server is exec'd (PID 1, gets SIGTERM from `docker stop`).
set -eo pipefail
shopt -s nullglob

log()  { printf '%s [Note] [Entrypoint]: %s\n' "$(date -u +%FT%TZ)" "$*"; }
warn() { printf '%s [Warn] [Entrypoint]: %s\n' "$(date -u +%FT%TZ)" "$*" >&2; }
die()  { printf '%s [ERROR] [Entrypoint]: %s\n' "$(date -u +%FT%TZ)" "$*" >&2; exit 1; }

# file_env VAR [DEFAULT]: VAR or VAR_FILE (contents), like the official image.
# MARIADB_* spellings are accepted as fallbacks.
file_env() {
	local var="$1" def="${2:-}"
	local fvar="${var}_FILE" mvar="MARIADB_${var#MYSQL_}" mfvar="MARIADB_${var#MYSQL_}_FILE"
	if [ -n "${!var:-}" ] && [ -n "${!fvar:-}" ]; then
		die "both $var and $fvar are set (but are exclusive)"
	fi
	local val="$def"
	if [ -n "${!var:-}" ]; then val="${!var}"
	elif [ -n "${!fvar:-}" ]; then val="$(< "${!fvar}")"
	elif [ -n "${!mvar:-}" ]; then val="${!mvar}"
	elif [ -n "${!mfvar:-}" ]; then val="$(< "${!mfvar}")"
	fi
	export "$var"="$val"
	unset "$fvar"
}

# SQL string literal / identifier escaping
sql_str()   { local s="${1//\\/\\\\}"; s="${s//\'/\\\'}"; printf "'%s'" "$s"; }
sql_ident() { local s="${1//\`/\`\`}"; printf '`%s`' "$s"; }

wants_help() {
	local a
	for a; do
		case "$a" in -'?'|--help|--print-defaults|-V|--version) return 0 ;; esac
	done
	return 1
}

# The engine is the image's: MariaDB where mariadbd exists, else MySQL.
if command -v mariadbd >/dev/null; then
	ENGINE=mariadb SERVER=mariadbd CLIENT=mariadb TZINFO=(mariadb-tzinfo-to-sql --skip-write-binlog)
else
	ENGINE=mysql SERVER=mysqld CLIENT=mysql TZINFO=(mysql_tzinfo_to_sql)
fi
# `docker run IMAGE --some-option` -> server --some-option; mysqld is mariadbd on MariaDB
if [ "${1:0:1}" = '-' ]; then
	set -- "$SERVER" "$@"
fi
case "$1" in
	mysqld|mariadbd|/usr/sbin/mysqld|/usr/sbin/mariadbd) shift; set -- "$SERVER" "$@" ;;
esac

if [ "$1" != "$SERVER" ] || wants_help "$@"; then
	exec "$@"
fi

# ---------------------------------------------------------------- server
DATADIR="$("$@" --verbose --help 2>/dev/null | awk '$1 == "datadir" { print $2; exit }')"
DATADIR="${DATADIR%/}"
: "${DATADIR:=/var/lib/mysql}"
INIT_SOCKET=/run/mysqld/init.sock

user_args=()
if [ "$(id -u)" = 0 ]; then
	mkdir -p "$DATADIR" /run/mysqld
	# fresh bind mounts / volumes may belong to root
	if [ "$(stat -c %U "$DATADIR")" != mysql ]; then
		chown -R mysql:mysql "$DATADIR"
	fi
	chown mysql:mysql /run/mysqld
	user_args=(--user=mysql)
fi

if [ ! -d "$DATADIR/mysql" ]; then
	file_env MYSQL_ROOT_PASSWORD
	file_env MYSQL_ROOT_HOST '%'
	file_env MYSQL_DATABASE
	file_env MYSQL_USER
	file_env MYSQL_PASSWORD
	file_env MYSQL_ALLOW_EMPTY_PASSWORD
	file_env MYSQL_RANDOM_ROOT_PASSWORD

	if [ -z "$MYSQL_ROOT_PASSWORD" ] && [ -z "$MYSQL_ALLOW_EMPTY_PASSWORD" ] && [ -z "$MYSQL_RANDOM_ROOT_PASSWORD" ]; then
		die "Database is uninitialized and password option is not specified.
    You need to specify one of the following as an environment variable:
    - MYSQL_ROOT_PASSWORD
    - MYSQL_ALLOW_EMPTY_PASSWORD
    - MYSQL_RANDOM_ROOT_PASSWORD"
	fi
	if [ "$MYSQL_USER" = root ]; then
		die "MYSQL_USER=root is not allowed; set MYSQL_ROOT_PASSWORD for root instead"
	fi
	if [ -n "$MYSQL_USER" ] && [ -z "$MYSQL_PASSWORD" ]; then
		die "MYSQL_USER is set but MYSQL_PASSWORD is empty"
	fi
	if [ -n "$MYSQL_RANDOM_ROOT_PASSWORD" ] && [ -z "$MYSQL_ROOT_PASSWORD" ]; then
		MYSQL_ROOT_PASSWORD="$(tr -dc 'A-Za-z0-9' < /dev/urandom | head -c 32 || true)"
		export MYSQL_ROOT_PASSWORD
		log "GENERATED ROOT PASSWORD: $MYSQL_ROOT_PASSWORD"
	fi

	log "Initializing database files in $DATADIR"
	# What the init writes is not replicated: no binary log until the real server runs.
	quiet_args=(--default-time-zone=SYSTEM --skip-log-bin)
	if [ "$ENGINE" = mariadb ]; then
		quiet_args+=(--expire-logs-days=0 --loose-innodb_buffer_pool_load_at_startup=0
			--loose-innodb_buffer_pool_dump_at_shutdown=0)
		mariadb-install-db "${user_args[@]}" --datadir="$DATADIR" --rpm \
			--auth-root-authentication-method=normal --skip-test-db --skip-name-resolve \
			"${quiet_args[@]}" > /dev/null
	else
		# root@localhost without a password, set below, as the official image does.
		"$@" "${user_args[@]}" --initialize-insecure --datadir="$DATADIR" "${quiet_args[@]}"
	fi
	log "Database files initialized"

	log "Starting temporary server (no TCP, socket $INIT_SOCKET)"
	rm -f "$INIT_SOCKET"
	"$@" "${user_args[@]}" --skip-networking --socket="$INIT_SOCKET" "${quiet_args[@]}" &
	init_pid=$!
	trap 'kill -TERM "$init_pid" 2>/dev/null; wait "$init_pid"; exit 143' TERM INT

	# root has no password until the first SQL batch below sets it
	ROOT_PWD_SET=
	docker_process_sql() { # docker_process_sql [--database=X] [mariadb args] < SQL
		MYSQL_PWD="${ROOT_PWD_SET:+$MYSQL_ROOT_PASSWORD}" \
			"$CLIENT" --no-defaults --protocol=socket --socket="$INIT_SOCKET" \
			-uroot --comments --batch "$@"
	}
	for i in $(seq 120); do
		if echo 'SELECT 1' | docker_process_sql --database=mysql >/dev/null 2>&1; then
			break
		fi
		kill -0 "$init_pid" 2>/dev/null || die "temporary server exited during start-up (see log above)"
		[ "$i" -lt 120 ] || die "temporary server did not accept connections within 60 s"
		sleep 0.5
	done
	log "Temporary server started"

	if [ -z "$MYSQL_INITDB_SKIP_TZINFO" ]; then
		# like the official image: load time zone tables (quietly)
		"${TZINFO[@]}" /usr/share/zoneinfo 2>/dev/null \
			| docker_process_sql --database=mysql >/dev/null 2>&1 \
			|| warn "could not load time zone tables (ignored)"
	fi

	root_pw_sql="$(sql_str "$MYSQL_ROOT_PASSWORD")"
	root_host_sql=
	if [ -n "$MYSQL_ROOT_HOST" ] && [ "$MYSQL_ROOT_HOST" != localhost ]; then
		rh="$(sql_str "$MYSQL_ROOT_HOST")"
		root_host_sql="CREATE USER 'root'@${rh} IDENTIFIED BY ${root_pw_sql};
GRANT ALL ON *.* TO 'root'@${rh} WITH GRANT OPTION;"
	fi
	# MySQL's --initialize makes root@localhost and its system accounts only;
	# mariadb-install-db makes more, which go, as in the official MariaDB image.
	cleanup_sql=
	if [ "$ENGINE" = mariadb ]; then
		cleanup_sql="DELETE FROM mysql.global_priv WHERE User NOT IN ('mariadb.sys', 'root') OR Host <> 'localhost';
DELETE FROM mysql.proxies_priv WHERE Host <> 'localhost';
FLUSH PRIVILEGES;"
	fi
	docker_process_sql --database=mysql <<-EOSQL
		SET @@SESSION.SQL_LOG_BIN=0;
		${cleanup_sql}
		ALTER USER 'root'@'localhost' IDENTIFIED BY ${root_pw_sql};
		${root_host_sql}
		DROP DATABASE IF EXISTS test;
	EOSQL
	ROOT_PWD_SET=1

	if [ -n "$MYSQL_DATABASE" ]; then
		log "Creating database $MYSQL_DATABASE"
		echo "CREATE DATABASE IF NOT EXISTS $(sql_ident "$MYSQL_DATABASE");" | docker_process_sql
	fi
	if [ -n "$MYSQL_USER" ] && [ -n "$MYSQL_PASSWORD" ]; then
		log "Creating user $MYSQL_USER"
		u="$(sql_str "$MYSQL_USER")"
		[ -z "$MYSQL_DATABASE" ] || log "Giving user $MYSQL_USER access to schema $MYSQL_DATABASE"
		{
			echo "CREATE USER ${u}@'%' IDENTIFIED BY $(sql_str "$MYSQL_PASSWORD");"
			if [ -n "$MYSQL_DATABASE" ]; then
				# '_' is a wildcard in GRANT ... ON db.*: escape it like the official image
				echo "GRANT ALL ON $(sql_ident "${MYSQL_DATABASE//_/\\_}").* TO ${u}@'%';"
			fi
			echo "FLUSH PRIVILEGES;"
		} | docker_process_sql
	fi

	# init files: SQL goes to MYSQL_DATABASE (if set); .sh scripts see
	# MYSQL_UNIX_PORT, so a plain `mysql -uroot -p"$MYSQL_ROOT_PASSWORD"` in
	# them reaches the temporary server. Sourced scripts can also call
	# docker_process_sql.
	db_args=()
	[ -n "$MYSQL_DATABASE" ] && db_args=(--database="$MYSQL_DATABASE")
	mysql=(docker_process_sql "${db_args[@]}")  # legacy name used by old init scripts
	export MYSQL_UNIX_PORT="$INIT_SOCKET"
	for f in /docker-entrypoint-initdb.d/*; do
		case "$f" in
			*.sh)
				if [ -x "$f" ]; then log "$0: running $f"; "$f"
				else log "$0: sourcing $f"; . "$f"; fi ;;
			*.sql)     log "$0: running $f"; docker_process_sql "${db_args[@]}" < "$f" ;;
			*.sql.gz)  log "$0: running $f"; gunzip -c "$f" | docker_process_sql "${db_args[@]}" ;;
			*.sql.xz)  log "$0: running $f"; xzcat "$f" | docker_process_sql "${db_args[@]}" ;;
			*.sql.bz2) log "$0: running $f"; bunzip2 -c "$f" | docker_process_sql "${db_args[@]}" ;;
			*.sql.zst) log "$0: running $f"; zstd -dc "$f" | docker_process_sql "${db_args[@]}" ;;
			*)         log "$0: ignoring $f" ;;
		esac
	done
	unset MYSQL_UNIX_PORT

	log "Stopping temporary server"
	kill -TERM "$init_pid"
	wait "$init_pid" || die "temporary server did not shut down cleanly"
	trap - TERM INT
	log "Temporary server stopped"
	log "$ENGINE init process done. Ready for start up."
fi

# Do not leak the secrets into the server's environment.
unset MYSQL_ROOT_PASSWORD MYSQL_PASSWORD MARIADB_ROOT_PASSWORD MARIADB_PASSWORD
exec "$@" "${user_args[@]}"
