#!/usr/bin/env bash
# Alternates brokers in rounds (rill, tansu, crabka, rill, ...), each on a fresh data directory,
# runs wire_peers.py against it with the broker's PID, then stops the broker.
# Usage: RILL=... TANSU=... CRABKA=... PY=... ROUNDS=3 OUT=raw DATA_ROOT=... ./run_rounds.sh [broker...]
# WP_ARGS: extra arguments for wire_peers.py (e.g. "--records 20000" for a smoke test).
# Brokers: rill tansu crabka (default: all three). A broker whose binary is unset is skipped.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-$HERE/raw}
DATA_ROOT=${DATA_ROOT:?set DATA_ROOT to a scratch directory}
PY=${PY:-python3}
BROKERS=("$@"); [ ${#BROKERS[@]} -eq 0 ] && BROKERS=(rill tansu crabka)
PORT=19092
mkdir -p "$OUT"

start() { # broker dir -> sets PID
  case $1 in
    rill)   exec "$RILL" serve "$2" --listen 127.0.0.1:$PORT ;;
    tansu)  exec "$TANSU" broker --listener-url tcp://127.0.0.1:$PORT \
              --advertised-listener-url tcp://127.0.0.1:$PORT \
              --storage-engine memory://tansu/ ;;
    crabka) exec "$CRABKA" 127.0.0.1:$PORT 127.0.0.1:19093 "$2" ;;
  esac
}

FIRST=${FIRST:-1}  # number of the first round (to add rounds to an earlier OUT)
for r in $(seq "$FIRST" $((FIRST + ROUNDS - 1))); do
  for b in "${BROKERS[@]}"; do
    case $b in rill) [ -n "${RILL:-}" ] || continue;; tansu) [ -n "${TANSU:-}" ] || continue;;
      crabka) [ -n "${CRABKA:-}" ] || continue;; esac
    dir="$DATA_ROOT/$b-$r"; rm -rf "$dir"; mkdir -p "$dir"
    t0=$(date +%s.%N)
    (cd "$dir" && exec 2>&1 && start "$b" "$dir") > "$OUT/$r-$b.broker.log" &
    pid=$!
    ready=""
    for _ in $(seq 1 600); do  # up to 60 s to accept a connection
      if (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then ready=yes; break; fi
      kill -0 $pid 2>/dev/null || break
      sleep 0.1
    done
    t1=$(date +%s.%N)
    echo "round $r $b pid $pid ready=${ready:-no} after $(echo "$t1 - $t0" | bc) s" | tee -a "$OUT/rounds.log"
    if [ -n "$ready" ]; then
      timeout 600 "$PY" "$HERE/wire_peers.py" --bootstrap 127.0.0.1:$PORT --broker-pid $pid ${WP_ARGS:-} \
        > "$OUT/$r-$b.json" 2> "$OUT/$r-$b.client.log"
      echo "  client exit $?" | tee -a "$OUT/rounds.log"
      echo "  broker $(grep -h VmHWM /proc/$pid/status 2>/dev/null)" | tee -a "$OUT/rounds.log"
    fi
    kill -INT $pid 2>/dev/null
    for _ in $(seq 1 100); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
    kill -KILL $pid 2>/dev/null; wait $pid 2>/dev/null
    rm -rf "$dir"
  done
done
