#!/usr/bin/env bash
# Before and after, alternately, on this machine: the log, delegation and resume benchmarks on
# SQLite, and delegation on Postgres (a fresh database per run).
#
#   benchmarks/side_by_side.sh BEFORE_DIR AFTER_DIR [ROUNDS]
#
# Each directory is a checkout with its own .venv (e.g. `git worktree add --detach ../before
# REV && (cd ../before && ./dev check)`). Postgres on 127.0.0.1:5432 with trust auth.
set -euo pipefail
before=$(cd "$1" && pwd)
after=$(cd "$2" && pwd)
rounds=${3:-2}
pg=${TETHER_TEST_PG:-postgresql://postgres@127.0.0.1:5432/postgres}
for round in $(seq "$rounds"); do
  for side in before after; do
    dir=$before
    [ "$side" = after ] && dir=$after
    cd "$dir"
    echo "=== round $round $side ($(git rev-parse --short HEAD)) sqlite $(date -u +%T)"
    PYTHONPATH=. .venv/bin/python -m benchmarks --runs 3 --only throughput,append,delegation,resume \
      --out "/tmp/side_by_side_${side}_${round}.json"
    db="side_by_side_${side}_${round}_$$"
    psql "$pg" -qc "CREATE DATABASE $db"
    echo "=== round $round $side postgres delegation $(date -u +%T)"
    TETHER_JWT_SECRET=side-by-side-benchmark-secret-0123456789 \
      TETHER_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:5432/$db" \
      PYTHONPATH=. .venv/bin/python -m benchmarks --runs 3 --only delegation \
      --out "/tmp/side_by_side_${side}_${round}_pg.json" || true
    psql "$pg" -qc "DROP DATABASE IF EXISTS $db"
  done
done
