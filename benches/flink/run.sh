#!/usr/bin/env bash
# Peer comparison for the Plexus windowed-count benchmark: Apache Flink SQL in local
# mode (PyFlink MiniCluster). See README.md beside this file.
#
# Usage: bash benches/flink/run.sh [--install] [--events N] [--parallelism P]
#                                  [--sink summary|blackhole] [--state-backend rocksdb|hashmap]
# Prints one JSON line on stdout (last line):
#   {"engine":"flink-sql-local","events":N,"keys":10000,"rows":R,"sum":S,"seconds":T,
#    "events_per_sec":E, ..., "wall_seconds":W}
# T = Flink's net job runtime (job created -> finished); W = whole run including
# python + JVM start-up and shutdown (input generation excluded).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${PLEXUS_FLINK_VENV:-$HOME/.cache/plexus-flink-venv}"
BENCH_DIR="${PLEXUS_BENCH_DIR:-/tmp/plexus-bench}"
FLINK_VERSION="${PLEXUS_FLINK_VERSION:-2.3.0}"
PYTHON="${PYTHON:-python3}"

EVENTS=5000000
PARALLELISM=2
SINK=summary
STATE_BACKEND=rocksdb
INSTALL=0

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --install) INSTALL=1 ;;
        --events) EVENTS="${2:?--events needs a value}"; shift ;;
        --events=*) EVENTS="${1#*=}" ;;
        --parallelism) PARALLELISM="${2:?--parallelism needs a value}"; shift ;;
        --parallelism=*) PARALLELISM="${1#*=}" ;;
        --sink) SINK="${2:?--sink needs a value}"; shift ;;
        --sink=*) SINK="${1#*=}" ;;
        --state-backend) STATE_BACKEND="${2:?--state-backend needs a value}"; shift ;;
        --state-backend=*) STATE_BACKEND="${1#*=}" ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 64 ;;
    esac
    shift
done
[[ "$EVENTS" =~ ^[0-9]+$ ]] || { echo "--events must be a non-negative integer" >&2; exit 64; }
[[ "$PARALLELISM" =~ ^[1-9][0-9]*$ ]] || { echo "--parallelism must be a positive integer" >&2; exit 64; }
case "$SINK" in summary|blackhole) ;; *) echo "--sink must be summary or blackhole" >&2; exit 64 ;; esac
case "$STATE_BACKEND" in rocksdb|hashmap) ;; *) echo "--state-backend must be rocksdb or hashmap" >&2; exit 64 ;; esac

# --- Java (PyFlink starts the JVM from JAVA_HOME, or from `java` on PATH) ---
if [ -z "${JAVA_HOME:-}" ]; then
    if command -v java >/dev/null 2>&1; then
        JAVA_HOME="$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")"
        export JAVA_HOME
    else
        echo "error: no java found; Flink ${FLINK_VERSION} needs Java 11 or 17 (set JAVA_HOME)" >&2
        exit 2
    fi
fi

# --- Python venv with apache-flink ---
have_flink() { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import pyflink.table' >/dev/null 2>&1; }
if ! have_flink; then
    if [ "$INSTALL" -ne 1 ]; then
        echo "apache-flink is not installed in $VENV." >&2
        echo "Re-run with --install to create the venv and pip install apache-flink==${FLINK_VERSION} (~1 GB download)." >&2
        exit 2
    fi
    echo "installing apache-flink==${FLINK_VERSION} into $VENV ..." >&2
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
    "$VENV/bin/python" -m pip install "apache-flink==${FLINK_VERSION}" >&2
    have_flink || { echo "error: pyflink still not importable after install" >&2; exit 1; }
fi
PY="$VENV/bin/python"

# --- input (generated once, not timed) ---
mkdir -p "$BENCH_DIR"
INPUT="$BENCH_DIR/events-${EVENTS}.csv"
if [ ! -s "$INPUT" ]; then
    echo "generating $INPUT ($EVENTS events) ..." >&2
    "$PY" "$HERE/windowed_count.py" gen "$INPUT" "$EVENTS"
fi

# --- the measured run ---
RESULT="$(mktemp "${TMPDIR:-/tmp}/plexus-flink-result.XXXXXX")"
trap 'rm -f "$RESULT"' EXIT
t0=$(date +%s.%N)
"$PY" "$HERE/windowed_count.py" run "$INPUT" "$EVENTS" \
    --parallelism "$PARALLELISM" --sink "$SINK" --state-backend "$STATE_BACKEND" --result-file "$RESULT" >&2
t1=$(date +%s.%N)

"$PY" - "$RESULT" "$t0" "$t1" <<'EOF'
import json, sys
path, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
d = json.load(open(path))
d["wall_seconds"] = round(t1 - t0, 3)
print(json.dumps(d, separators=(",", ":")))
print(f"total wall seconds (python + JVM start-up, job, shutdown): {t1 - t0:.3f}", file=sys.stderr)
ok = d.get("ok")
sys.exit(1 if ok is False else 0)
EOF
