#!/bin/bash
# Entrypoint of the local RabbitMQ stand-in for rabbitmq:4.1-management.
#
#  RABBITMQ_DEFAULT_USER / RABBITMQ_DEFAULT_PASS / RABBITMQ_DEFAULT_VHOST
#      (or *_FILE) are passed to the broker, which reads them itself (like
#      default_user / default_pass / default_vhost in rabbitmq.conf). RabbitMQ
#      only uses them when its database is empty (first boot of a volume); the
#      given user then *replaces* guest, which is never created.
#  RABBITMQ_ERLANG_COOKIE -> /var/lib/rabbitmq/.erlang.cookie (mode 600)
#
# Node name: rabbit@$(hostname -s) (RabbitMQ's default), data in
# /var/lib/rabbitmq/mnesia/rabbit@<host>; so give the container a fixed
# --hostname to keep its data across re-creation.
# The server is exec'd as the rabbitmq user (setpriv, no su/gosu process in
# between), so `docker stop` (SIGTERM) reaches it and it stops cleanly.
set -euo pipefail

log() { printf '%s [entrypoint] %s\n' "$(date -u +%FT%TZ)" "$*"; }
die() { printf '%s [entrypoint] error: %s\n' "$(date -u +%FT%TZ)" "$*" >&2; exit 1; }

file_env() { # VAR or VAR_FILE
	local var="$1" fvar="${1}_FILE"
	if [ -n "${!fvar:-}" ]; then
		[ -z "${!var:-}" ] || die "both $var and $fvar are set (but are exclusive)"
		export "$var"="$(< "${!fvar}")"
	fi
	unset "$fvar"
}

if [ "${1:-}" = rabbitmq-server ] || [ "${1:-}" = /usr/sbin/rabbitmq-server ] || [ "${1:-}" = /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
	shift
	DATA=/var/lib/rabbitmq
	export HOME="$DATA"

	if [ "$(id -u)" = 0 ]; then
		mkdir -p "$DATA" /var/log/rabbitmq /etc/rabbitmq/conf.d
		# a fresh bind mount (or a volume first used by another image) may be root's
		if [ "$(stat -c %U "$DATA")" != rabbitmq ]; then
			chown -R rabbitmq:rabbitmq "$DATA"
		fi
		chown rabbitmq:rabbitmq /var/log/rabbitmq
		chmod 0750 "$DATA"
	fi

	file_env RABBITMQ_DEFAULT_USER
	file_env RABBITMQ_DEFAULT_PASS
	file_env RABBITMQ_DEFAULT_VHOST
	file_env RABBITMQ_ERLANG_COOKIE

	if [ -n "${RABBITMQ_DEFAULT_USER:-}" ] || [ -n "${RABBITMQ_DEFAULT_PASS:-}" ]; then
		[ -n "${RABBITMQ_DEFAULT_USER:-}" ] || die "RABBITMQ_DEFAULT_PASS is set but RABBITMQ_DEFAULT_USER is not"
		[ -n "${RABBITMQ_DEFAULT_PASS:-}" ] || die "RABBITMQ_DEFAULT_USER is set but RABBITMQ_DEFAULT_PASS is not"
	fi
	# RABBITMQ_DEFAULT_USER/PASS/VHOST are read by RabbitMQ itself (4.0 does),
	# exactly as in the official image. They are deliberately NOT written to
	# rabbitmq.conf: cuttlefish cuts a value at '#' (a password "a#b" would
	# become "a").

	cookie="$DATA/.erlang.cookie"
	if [ -n "${RABBITMQ_ERLANG_COOKIE:-}" ]; then
		if [ -e "$cookie" ] && [ "$(cat "$cookie")" != "$RABBITMQ_ERLANG_COOKIE" ]; then
			log "replacing $cookie with RABBITMQ_ERLANG_COOKIE"
		fi
		rm -f "$cookie"
		(umask 077; printf '%s' "$RABBITMQ_ERLANG_COOKIE" > "$cookie")
		chmod 600 "$cookie"
		[ "$(id -u)" != 0 ] || chown rabbitmq:rabbitmq "$cookie"
	fi
	unset RABBITMQ_ERLANG_COOKIE  # the cookie file is authoritative

	if [ "$(id -u)" = 0 ]; then
		exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups \
			env HOME="$DATA" USER=rabbitmq LOGNAME=rabbitmq \
			/usr/lib/rabbitmq/bin/rabbitmq-server "$@"
	fi
	exec /usr/lib/rabbitmq/bin/rabbitmq-server "$@"
fi

exec "$@"
