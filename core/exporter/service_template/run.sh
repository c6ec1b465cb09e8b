#!/usr/bin/env sh
# Start the service on 127.0.0.1:8000 (HOST and PORT override; TINYFORGE_PRECISION=int8|fp32).
cd "$(dirname "$0")" && exec python -m uvicorn app:app --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}"
