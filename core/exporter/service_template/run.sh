#!/usr/bin/env sh
# Start the service on 127.0.0.1:8000. HOST and PORT override; TINYFORGE_PRECISION=int8|fp32;
# TINYFORGE_API_KEY=... makes every route but /health require "Authorization: Bearer <key>".
# http_timeouts drops connections whose request head arrives too slowly (slowloris).
cd "$(dirname "$0")" || exit 1
case "${HOST:-127.0.0.1}" in
  127.*|localhost|::1) ;;
  *) [ -n "${TINYFORGE_API_KEY:-}" ] || echo "warning: listening on ${HOST} without authentication: anyone who can reach this machine can use the service (set TINYFORGE_API_KEY)" >&2 ;;
esac
exec python -m uvicorn app:app --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}" --http http_timeouts:TimeoutH11Protocol
