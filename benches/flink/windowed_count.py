#!/usr/bin/env python3
"""Peer comparison for the Plexus windowed-count benchmark: Apache Flink SQL, local mode.

Counts events per key in 1-minute tumbling event-time windows. The event set is
defined by a formula shared with the Plexus (Rust) side:

    for i in 0..N:
        key       = "user-" + str((i * 7919) % 10000)
        timestamp = 1_700_000_000_000 + (i * 6) // 5   # ms since epoch, 1.2 ms/event

Subcommands:
    gen PATH N            write the input CSV (key,ts_ms), no header (not timed)
    run PATH N [options]  run the Flink job and write a JSON summary

Design choices (see README.md for the caveats):

* Streaming mode with an event-time watermark (`ts - INTERVAL '0' SECOND`), because
  Plexus is a streaming engine. The filesystem source is bounded, so the job ends by
  itself; at end of input Flink emits the final MAX watermark that fires the last
  windows. The input is generated in timestamp order, so a 0 s out-of-orderness bound
  drops nothing (the script checks rows and sum against the expected values).
* Window boundaries are epoch-aligned minutes in UTC (`table.local-time-zone = UTC`,
  rowtime is `TO_TIMESTAMP_LTZ(ts_ms, 3)`). 1_700_000_000_000 ms is 20 s past a minute
  boundary, so N = 5,000,000 spans 101 windows (the first and last are partial) and
  every window holds all 10,000 keys: 1,010,000 result rows, sum of counts 5,000,000.
* State backend: RocksDB (`state.backend.type: rocksdb`), as on the Plexus side
  ("--state-backend hashmap" switches to Flink's heap backend for comparison).
  No checkpointing (bounded job, nothing to recover); RocksDB uses Flink's managed
  memory as its block cache / write buffers.
* Sink ("--sink summary", the default): the per-(window, key) counts (~1M rows) are
  fed, inside the same SQL job, into a second, cascaded 1-minute tumbling window on
  their `window_time` that computes COUNT(*) and SUM(cnt) per window. That emits only
  ~100 append-only rows to the client, so the result path never bottlenecks the job,
  while every per-key window row is still really produced (and checked: rows, sum).
  The extra cost is one cheap append-only aggregation over ~1M rows (~20% of the
  5M-event input), which is roughly what any engine pays to count its output.
  A plain collect of the 1M rows to Python would instead measure the py4j/Arrow
  result transport, not the window aggregation.
  "--sink blackhole" writes the per-(window, key) rows into Flink's `blackhole`
  connector (the pure windowed aggregation, no cascade); rows/sum are then unknown
  (reported as null) - use it to see what the cascade costs.
"""

import argparse
import json
import os
import sys
import time

BASE_TS = 1_700_000_000_000
KEYS = 10_000
KEY_MUL = 7919
WINDOW_MS = 60_000


def gen(path: str, n: int) -> None:
    """Write `key,ts_ms` lines for i in 0..n to `path` (atomically via a temp file)."""
    tmp = f"{path}.tmp.{os.getpid()}"
    chunk = 200_000
    with open(tmp, "w", buffering=1 << 20) as f:
        for start in range(0, n, chunk):
            end = min(n, start + chunk)
            f.write(
                "".join(
                    f"user-{(i * KEY_MUL) % KEYS},{BASE_TS + (i * 6) // 5}\n"
                    for i in range(start, end)
                )
            )
    os.replace(tmp, path)


def expected(n: int) -> tuple:
    """(rows, sum) the job must produce for n events.

    gcd(7919, 10000) = 1, so keys repeat with period exactly 10,000 in i: a window
    holding c consecutive events holds min(c, 10000) distinct keys.
    """
    if n <= 0:
        return 0, 0
    per_window = {}
    # events are in timestamp order; count events per window by walking boundaries
    i = 0
    while i < n:
        ts = BASE_TS + (i * 6) // 5
        w = ts // WINDOW_MS
        # first i whose ts reaches the next window: ts(i) >= (w+1)*WINDOW_MS
        # (i*6)//5 >= t  <=>  i*6 >= 5*t  <=>  i >= ceil(5*t/6)
        t_next = (w + 1) * WINDOW_MS - BASE_TS
        i_next = min(n, -(-5 * t_next // 6))
        per_window[w] = i_next - i
        i = i_next
    rows = sum(min(c, KEYS) for c in per_window.values())
    return rows, n


def run(path: str, n: int, parallelism: int, sink: str, state_backend: str, result_file: str) -> None:
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    conf = Configuration()
    conf.set_string("execution.runtime-mode", "streaming")
    conf.set_string("parallelism.default", str(parallelism))
    conf.set_string("table.exec.resource.default-parallelism", str(parallelism))
    conf.set_string("table.local-time-zone", "UTC")
    conf.set_string("state.backend.type", state_backend)
    # Local mode defaults managed memory (RocksDB's cache + write buffers) to 128 MB for
    # the whole MiniCluster; give it 512 MB (the window state here is small anyway:
    # ~10k keys x a few open window slices per subtask).
    conf.set_string("taskmanager.memory.managed.size", "512m")
    conf.set_string("pipeline.name", f"plexus-peer-windowed-count-{n}")
    settings = (
        EnvironmentSettings.new_instance()
        .in_streaming_mode()
        .with_configuration(conf)
        .build()
    )
    t_env = TableEnvironment.create(settings)

    t_env.execute_sql(
        f"""
        CREATE TEMPORARY TABLE events (
            `key`  STRING,
            ts_ms  BIGINT,
            ts AS TO_TIMESTAMP_LTZ(ts_ms, 3),
            WATERMARK FOR ts AS ts - INTERVAL '0' SECOND
        ) WITH (
            'connector' = 'filesystem',
            'path' = 'file://{os.path.abspath(path)}',
            'format' = 'csv'
        )
        """
    )
    # The measured operation: COUNT(*) per key per 1-minute tumbling event-time window.
    t_env.execute_sql(
        """
        CREATE TEMPORARY VIEW per_key AS
        SELECT window_start AS w_start, window_end AS w_end, window_time AS w_time,
               `key`, COUNT(*) AS cnt
        FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
        GROUP BY window_start, window_end, window_time, `key`
        """
    )

    windows = rows = total = None
    if sink == "summary":
        sql = """
            SELECT window_start, COUNT(*) AS nrows, SUM(cnt) AS total
            FROM TABLE(TUMBLE(TABLE per_key, DESCRIPTOR(w_time), INTERVAL '1' MINUTE))
            GROUP BY window_start, window_end
        """
        t_submit = time.perf_counter()
        result = t_env.execute_sql(sql)
        windows = rows = total = 0
        with result.collect() as it:
            for r in it:
                windows += 1
                rows += r[1]
                total += r[2]
    elif sink == "blackhole":
        t_env.execute_sql(
            """
            CREATE TEMPORARY TABLE sink_bh (
                window_start TIMESTAMP(3), window_end TIMESTAMP(3), `key` STRING, cnt BIGINT
            ) WITH ('connector' = 'blackhole')
            """
        )
        t_submit = time.perf_counter()
        result = t_env.execute_sql(
            "INSERT INTO sink_bh SELECT w_start, w_end, `key`, cnt FROM per_key"
        )
        result.wait()
    else:
        raise SystemExit(f"unknown sink {sink!r}")
    t_done = time.perf_counter()

    # Flink's own job runtime (JobMaster: job created -> finished): the job itself,
    # without SQL planning/codegen and MiniCluster start-up on the client side.
    net_ms = None
    try:
        job_result = result.get_job_client().get_job_execution_result().result()
        net_ms = job_result.get_net_runtime()
    except Exception as e:  # noqa: BLE001 - report and fall back to client timing
        print(f"warning: could not read the job's net runtime: {e}", file=sys.stderr)

    submit_s = t_done - t_submit
    seconds = net_ms / 1000.0 if net_ms is not None else submit_s
    exp_rows, exp_sum = expected(n)
    out = {
        "engine": "flink-sql-local",
        "events": n,
        "keys": KEYS,
        "rows": rows,
        "sum": total,
        "seconds": round(seconds, 3),
        "events_per_sec": round(n / seconds) if seconds > 0 else None,
        "submit_to_done_seconds": round(submit_s, 3),
        "windows": windows,
        "expected_rows": exp_rows,
        "expected_sum": exp_sum,
        "ok": (rows == exp_rows and total == exp_sum) if sink == "summary" else None,
        "parallelism": parallelism,
        "sink": sink,
        "state_backend": state_backend,
        "flink_version": _flink_version(),
    }
    with open(result_file, "w") as f:
        json.dump(out, f)


def _flink_version():
    try:
        from importlib.metadata import version

        return version("apache-flink")
    except Exception:  # noqa: BLE001
        return None


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("path")
    g.add_argument("events", type=int)
    r = sub.add_parser("run")
    r.add_argument("path")
    r.add_argument("events", type=int)
    r.add_argument("--parallelism", type=int, default=2)
    r.add_argument("--sink", choices=["summary", "blackhole"], default="summary")
    r.add_argument("--state-backend", choices=["rocksdb", "hashmap"], default="rocksdb")
    r.add_argument("--result-file", required=True)
    a = p.parse_args(argv)
    if a.cmd == "gen":
        gen(a.path, a.events)
    else:
        run(a.path, a.events, a.parallelism, a.sink, a.state_backend, a.result_file)


if __name__ == "__main__":
    main()
