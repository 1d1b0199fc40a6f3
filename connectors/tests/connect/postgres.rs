//! The PostgreSQL connectors against a real server (the harness's own):
//! a table through `PostgresSource` in each mode, a topic, and
//! `PostgresSink` into another table, equal row for row; the sink's
//! `auto.create`, `auto.evolve`, deletes and a value that does not fit
//! its column.

use std::time::{Duration, Instant};

use plexus_core::Record;
use plexus_core::client::{EmbeddedProducer, Producer, ProducerConfig};

use super::Connect;
use super::pg::Postgres;

/// JSON with its schema: the types go through the topic unchanged.
const TYPED: &str = r#", "key.converter.schemas.enable": "true", "value.converter.schemas.enable": "true""#;

/// Every column type the mapping covers, and a row maker.
const TYPES_TABLE: &str = "(id bigint PRIMARY KEY, name text, amount numeric(12,2), ratio double precision, \
    small smallint, flag boolean, born date, at timestamptz, updated timestamp NOT NULL DEFAULT localtimestamp, \
    tags text[], scores int[], doc jsonb, uid uuid, raw bytea)";

fn insert_rows(pg: &Postgres, table: &str, ids: std::ops::Range<i64>) {
    pg.psql(&format!(
        "INSERT INTO {table} (id, name, amount, ratio, small, flag, born, at, tags, scores, doc, uid, raw) \
         SELECT i, 'name ' || i || E'\\ttab \"q\" \\\\', (i * 1.25)::numeric(12,2), i / 3.0, (i % 100)::smallint, \
         i % 2 = 0, date '2024-01-01' + (i % 400)::int, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 second', \
         ARRAY['a' || i, NULL, 'b,c'], ARRAY[i::int, -1], jsonb_build_object('i', i, 'nested', jsonb_build_array(1, 'x')), \
         md5(i::text)::uuid, decode(lpad(to_hex(i), 8, '0'), 'hex') \
         FROM generate_series({}, {}) AS i",
        ids.start,
        ids.end - 1
    ));
}

/// Each table as text, row by row, in key order.
fn rows(pg: &Postgres, table: &str) -> String {
    pg.psql(&format!(
        "SELECT coalesce(string_agg(row(id, name, amount, ratio, small, flag, born, at, updated, tags, scores, \
         doc::text, uid::text, raw)::text, E'\\n' ORDER BY id), '') FROM {table}"
    ))
}

/// Waits until `target` equals `source` row for row.
async fn until_equal(connect: &Connect, pg: &Postgres, source: &str, target: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (want, got) = (rows(pg, source), rows(pg, target));
        if want == got {
            return;
        }
        if Instant::now() > deadline {
            let count = |t: &str| pg.psql(&format!("SELECT count(*) FROM {t}"));
            let status: Vec<_> = connect.worker.connectors().iter().map(|c| connect.worker.status(c)).collect();
            let first = want.lines().zip(got.lines()).find(|(a, b)| a != b);
            panic!(
                "{what}: {target} ({} rows) never equalled {source} ({} rows); first difference {first:?}; \
                 the connectors: {status:?}",
                count(target),
                count(source)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sink_config(name: &str, url: &str, topic: &str, table: &str) -> String {
    format!(
        r#"{{"name": "{name}", "config": {{"connector.class": "PostgresSink", "connection.url": "{url}",
            "topics": "{topic}", "table.name.format": "{table}", "insert.mode": "upsert", "pk.mode": "record_key",
            "delete.enabled": "true", "offset.flush.interval.ms": "50"{TYPED}}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_query_mode_copies_a_table_row_for_row_through_a_topic() {
    let pg = Postgres::start();
    let modes = [
        ("bulk", ""),
        ("incrementing", r#", "incrementing.column.name": "id""#),
        ("timestamp", r#", "timestamp.column.name": "updated""#),
        ("timestamp+incrementing", r#", "timestamp.column.name": "updated", "incrementing.column.name": "id""#),
    ];
    for (i, (mode, keys)) in modes.iter().enumerate() {
        let (source, target) = (format!("src_{i}"), format!("dst_{i}"));
        pg.psql(&format!("CREATE TABLE {source} {TYPES_TABLE}; CREATE TABLE {target} (LIKE {source} INCLUDING ALL)"));
        insert_rows(&pg, &source, 0..700);
        let mut connect = Connect::new();
        let topic = format!("pg-{source}");
        let source_config = format!(
            r#"{{"name": "read-{i}", "config": {{"connector.class": "PostgresSource", "connection.url": "{url}",
                "mode": "{mode}", "table.whitelist": "{source}", "topic.prefix": "pg-", "poll.interval.ms": "100",
                "batch.max.rows": "250"{keys}{TYPED}}}}}"#,
            url = pg.url
        );
        connect.start(&source_config).await;
        connect.start(&sink_config(&format!("write-{i}"), &pg.url, &topic, &target)).await;
        until_equal(&connect, &pg, &source, &target, mode).await;

        // New rows, in every mode.
        insert_rows(&pg, &source, 700..1000);
        until_equal(&connect, &pg, &source, &target, &format!("{mode}: new rows")).await;

        if mode.starts_with("timestamp") || *mode == "bulk" {
            // Updated rows move their timestamp forward (updated rows are
            // not seen by incrementing mode, by design).
            pg.psql(&format!(
                "UPDATE {source} SET name = 'renamed', updated = localtimestamp + interval '1 millisecond' WHERE id % 7 = 0"
            ));
            until_equal(&connect, &pg, &source, &target, &format!("{mode}: updates")).await;
        }
        if *mode == "bulk" {
            // A deleted row's key gets a tombstone, and the sink deletes it.
            pg.psql(&format!("DELETE FROM {source} WHERE id % 5 = 0"));
            until_equal(&connect, &pg, &source, &target, "bulk: deletes").await;
        }

        // A restart resumes from the stored offsets: rows added while
        // stopped arrive, none twice (the sink's insert would refuse a
        // duplicate key... it upserts; the source offsets are checked by
        // the count of records in the topic instead).
        connect.worker.stop_all().await;
        let before = connect.read(&topic).await.len();
        insert_rows(&pg, &source, 1000..1100);
        connect.restart_worker();
        connect.start(&source_config).await;
        connect.start(&sink_config(&format!("write-{i}"), &pg.url, &topic, &target)).await;
        until_equal(&connect, &pg, &source, &target, &format!("{mode}: after a restart")).await;
        if *mode != "bulk" {
            let after = connect.read(&topic).await.len();
            assert_eq!(after - before, 100, "{mode}: after a restart only the 100 new rows are read");
        }
        connect.worker.stop_all().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_query_is_read_with_its_own_where() {
    let pg = Postgres::start();
    pg.psql(&format!("CREATE TABLE orders {TYPES_TABLE}; CREATE TABLE big_orders (LIKE orders INCLUDING ALL)"));
    insert_rows(&pg, "orders", 0..500);
    pg.psql("CREATE VIEW wanted AS SELECT * FROM orders WHERE amount > 300");
    let connect = Connect::new();
    connect
        .start(&format!(
            r#"{{"name": "q", "config": {{"connector.class": "PostgresSource", "connection.url": "{}",
                "mode": "incrementing", "incrementing.column.name": "id", "topic.prefix": "big-orders",
                "query": "SELECT * FROM orders WHERE amount > 300", "poll.interval.ms": "100",
                "transforms": "key", "transforms.key.type": "ValueToKey", "transforms.key.fields": "id"{TYPED}}}}}"#,
            pg.url
        ))
        .await;
    connect.start(&sink_config("w", &pg.url, "big-orders", "big_orders")).await;
    until_equal(&connect, &pg, "wanted", "big_orders", "query mode").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_creates_evolves_deletes_and_rejects_what_does_not_fit() {
    let pg = Postgres::start();
    let connect = Connect::new();
    connect.log.create_topic("people", 1, plexus_core::TopicConfig::default()).expect("topic");
    let producer = EmbeddedProducer::new(connect.log.clone(), ProducerConfig::default()).expect("producer");
    let send = |key: &str, value: Option<&str>| {
        let record = match value {
            Some(v) => Record::with_key(key.to_owned(), v.to_owned()),
            None => Record { key: Some(key.to_owned().into()), value: None, headers: Vec::new(), timestamp: None },
        };
        producer.send("people", record)
    };
    // Schemaless JSON: the table's types come from the values.
    for i in 0..100 {
        send(&format!(r#"{{"id": {i}}}"#), Some(&format!(r#"{{"id": {i}, "name": "p{i}", "age": {}}}"#, 20 + i)))
            .await
            .expect("ack");
    }
    connect
        .start(&format!(
            r#"{{"name": "people", "config": {{"connector.class": "PostgresSink", "connection.url": "{}",
                "topics": "people", "insert.mode": "upsert", "pk.mode": "record_key", "delete.enabled": "true",
                "auto.create": "true", "auto.evolve": "true", "key.converter.schemas.enable": "false",
                "value.converter.schemas.enable": "false", "errors.tolerance": "all",
                "errors.deadletterqueue.topic.name": "people-dlq", "offset.flush.interval.ms": "50"}}}}"#,
            pg.url
        ))
        .await;
    let count = |sql: &str| pg.psql(sql);
    let deadline = Instant::now() + Duration::from_secs(30);
    while count("SELECT count(*) FROM people").trim() != "100" {
        assert!(Instant::now() < deadline, "the table was never filled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        pg.psql(
            "SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position) \
             FROM information_schema.columns WHERE table_name = 'people'"
        ),
        "id bigint, name text, age bigint"
    );
    // A new field: a new column. A tombstone: a delete. A value that does
    // not fit its column: the dead-letter topic, the rest written.
    send(r#"{"id": 1}"#, Some(r#"{"id": 1, "name": "p1", "age": 21, "email": "p1@example.com"}"#)).await.expect("ack");
    send(r#"{"id": 2}"#, None).await.expect("ack");
    send(r#"{"id": 3}"#, Some(r#"{"id": 3, "name": "p3", "age": "old"}"#)).await.expect("ack");
    send(r#"{"id": 100}"#, Some(r#"{"id": 100, "name": "p100", "age": 120}"#)).await.expect("ack");
    let deadline = Instant::now() + Duration::from_secs(30);
    while count("SELECT count(*) FROM people").trim() != "100"
        || count("SELECT count(email) FROM people") != "1"
        || count("SELECT count(*) FROM people WHERE id IN (2, 100)") != "1"
    {
        assert!(Instant::now() < deadline, "the changes never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pg.psql("SELECT email FROM people WHERE id = 1"), "p1@example.com");
    assert_eq!(pg.psql("SELECT count(*) FROM people WHERE id = 2"), "0");
    assert_eq!(pg.psql("SELECT age FROM people WHERE id = 3"), "23", "the rejected update left the row");
    let dead = connect.read("people-dlq").await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        super::dead_letter_reasons(&dead),
        ["column \"age\": string \"old\" cannot be written to a column of type bigint"]
    );
    connect.worker.stop_all().await;
}

#[tokio::test]
async fn bad_postgres_configs_are_refused_with_the_key_and_the_fix() {
    let connect = Connect::new();
    let cases = [
        (
            r#"{"name": "a", "config": {"connector.class": "PostgresSource", "connection.url": "mysql://x", "mode": "bulk"}}"#,
            "connector \"a\": connection.url: \"mysql://x\" is not a PostgreSQL URL; use postgres://user:password@host:port/database",
        ),
        (
            r#"{"name": "b", "config": {"connector.class": "JdbcSourceConnector", "connection.url": "postgres://localhost/x", "mode": "incrementing"}}"#,
            "connector \"b\": incrementing.column.name: missing; this mode reads rows by it: name an integer column",
        ),
        (
            r#"{"name": "c", "config": {"connector.class": "PostgresSource", "connection.url": "postgres://localhost/x", "mode": "sometimes"}}"#,
            "connector \"c\": mode: unknown variant `sometimes`, expected one of `bulk`, `incrementing`, `timestamp`, `timestamp+incrementing`",
        ),
        (
            r#"{"name": "d", "config": {"connector.class": "PostgresSink", "connection.url": "postgres://localhost/x", "topics": "t", "insert.mode": "upsert"}}"#,
            "connector \"d\": pk.mode: none, but insert.mode upsert and update need a key; set pk.mode=record_key",
        ),
        (
            r#"{"name": "e", "config": {"connector.class": "io.confluent.connect.jdbc.JdbcSinkConnector", "connection.url": "postgres://postgres@127.0.0.1:1/x", "topics": "t"}}"#,
            "connector \"e\": connection.url: cannot connect to postgres://postgres@127.0.0.1:1/x:",
        ),
        (
            r#"{"name": "f", "config": {"connector.class": "PostgresSink", "connection.url": "postgres://u:secret@127.0.0.1:1/x", "topics": "t"}}"#,
            "connector \"f\": connection.url: cannot connect to postgres://u:****@127.0.0.1:1/x:",
        ),
        (
            r#"{"name": "f2", "config": {"connector.class": "PostgresSink", "connection.url": "postgres://u:secret@127.0.0.1:1/x", "connection.user": "other", "topics": "t"}}"#,
            "connector \"f2\": connection.url: cannot connect to postgres://other:****@127.0.0.1:1/x:",
        ),
        (
            r#"{"name": "g", "config": {"connector.class": "PostgresCdcSource", "connection.url": "postgres://localhost/x", "topic.prefix": "shop", "slot.name": "My-Slot"}}"#,
            "connector \"g\": slot.name: \"My-Slot\": a slot name is lower-case letters, digits and underscores",
        ),
        (
            r#"{"name": "h", "config": {"connector.class": "io.debezium.connector.postgresql.PostgresConnector", "connection.url": "postgres://localhost/x", "topic.prefix": "shop", "plugin.name": "decoderbufs"}}"#,
            "connector \"h\": plugin.name: \"decoderbufs\": Plexus decodes the built-in pgoutput only",
        ),
        (
            r#"{"name": "i", "config": {"connector.class": "PostgresCdcSource", "connection.url": "postgres://localhost/x"}}"#,
            "connector \"i\": topic.prefix: missing field `topic.prefix`",
        ),
    ];
    for (json, want) in cases {
        let config = plexus_connectors::ConnectorConfig::from_json(json).expect("json");
        let err = connect.worker.start(config).await.expect_err(want).to_string();
        assert!(err.starts_with(want), "got:  {err}\nwant: {want}");
        assert!(!err.contains("secret"), "a password is never shown: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
}

fn cdc_config(url: &str) -> String {
    format!(
        r#"{{"name": "cdc", "config": {{"connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "connection.url": "{url}", "topic.prefix": "shop", "table.include.list": "public\\.accounts",
            "slot.name": "plexus_test", "poll.interval.ms": "50", "heartbeat.interval.ms": "200"{TYPED}}}}}"#
    )
}

/// The sink of change events: `after` of each event; a delete's `after`
/// is null, so it deletes (as its tombstone does again).
fn cdc_sink_config(url: &str) -> String {
    format!(
        r#"{{"name": "copy", "config": {{"connector.class": "PostgresSink", "connection.url": "{url}",
            "topics": "shop.public.accounts", "table.name.format": "accounts_copy", "insert.mode": "upsert",
            "pk.mode": "record_key", "delete.enabled": "true", "offset.flush.interval.ms": "50",
            "transforms": "after", "transforms.after.type": "org.apache.kafka.connect.transforms.ExtractField$Value",
            "transforms.after.field": "after"{TYPED}}}}}"#
    )
}

fn accounts(pg: &Postgres, table: &str) -> String {
    pg.psql(&format!(
        "SELECT coalesce(string_agg(row(id, owner, balance, tags, at, note)::text, E'\\n' ORDER BY id), '') FROM {table}"
    ))
}

async fn until_accounts_equal(connect: &Connect, pg: &Postgres, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while accounts(pg, "accounts") != accounts(pg, "accounts_copy") {
        if Instant::now() > deadline {
            let status: Vec<_> = connect.worker.connectors().iter().map(|c| connect.worker.status(c)).collect();
            panic!(
                "{what}: the copy never equalled the table:\n{}\n---\n{}\n{status:?}",
                accounts(pg, "accounts"),
                accounts(pg, "accounts_copy")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_streams_inserts_updates_and_deletes_across_a_restart() {
    let pg = Postgres::start();
    pg.psql(
        "CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance numeric(12,2), tags text[], \
         at timestamptz, note text); CREATE TABLE accounts_copy (LIKE accounts INCLUDING ALL); \
         CREATE TABLE ignored (id int PRIMARY KEY); ALTER TABLE accounts REPLICA IDENTITY FULL",
    );
    pg.psql(
        "INSERT INTO accounts SELECT i, 'owner ' || i, i * 10.5, ARRAY['t' || i], \
         timestamptz '2024-05-01 12:00:00.123456+00' + i * interval '1 minute', NULL FROM generate_series(1, 100) i",
    );
    let mut connect = Connect::new();
    connect.start(&cdc_config(&pg.url)).await;
    connect.start(&cdc_sink_config(&pg.url)).await;
    until_accounts_equal(&connect, &pg, "the snapshot").await;

    // Changes in several transactions, and one to a table not captured.
    pg.psql("INSERT INTO accounts VALUES (101, 'new', 1.25, '{a,b}', now(), 'tab\there')");
    pg.psql("BEGIN; UPDATE accounts SET balance = balance + 1 WHERE id % 3 = 0; DELETE FROM accounts WHERE id % 10 = 0; COMMIT");
    pg.psql("INSERT INTO ignored VALUES (1)");
    pg.psql("UPDATE accounts SET owner = 'renamed', note = NULL, tags = NULL WHERE id = 7");
    pg.psql("BEGIN; DELETE FROM accounts WHERE id = 101; INSERT INTO accounts VALUES (101, 'again', 2, '{}', NULL, 'x'); COMMIT");
    // A large (TOASTed) value, then an update that leaves it unchanged:
    // the server sends it only in the old row (REPLICA IDENTITY FULL).
    pg.psql(
        "UPDATE accounts SET note = (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 400) i) WHERE id = 2",
    );
    pg.psql("UPDATE accounts SET balance = 99 WHERE id = 2");
    until_accounts_equal(&connect, &pg, "streamed changes").await;

    // A restart: changes made while stopped arrive, the snapshot is not
    // taken again, nothing is read twice.
    connect.worker.stop_all().await;
    let events_before = connect.read("shop.public.accounts").await;
    pg.psql("UPDATE accounts SET balance = 0 WHERE id < 20; DELETE FROM accounts WHERE id = 55");
    connect.restart_worker();
    connect.start(&cdc_config(&pg.url)).await;
    connect.start(&cdc_sink_config(&pg.url)).await;
    until_accounts_equal(&connect, &pg, "after a restart").await;
    pg.psql("INSERT INTO accounts VALUES (500, 'last', 5, NULL, NULL, NULL)");
    until_accounts_equal(&connect, &pg, "after a restart, streaming").await;
    connect.worker.stop_all().await;

    let events = connect.read("shop.public.accounts").await;
    let ops: Vec<String> = events
        .iter()
        .map(|r| match r.value.as_deref() {
            None => "tombstone".to_owned(),
            Some(v) => {
                let json: serde_json::Value = serde_json::from_slice(v).expect("json");
                json["payload"]["op"].as_str().unwrap_or("?").to_owned()
            }
        })
        .collect();
    let count = |op: &str| ops.iter().filter(|o| *o == op).count();
    assert_eq!(count("r"), 100, "one snapshot, not repeated on restart");
    // 11 deletes (ids 10..100 by 10, and 101) before the restart, one after.
    assert_eq!(count("d"), 12);
    assert_eq!(count("tombstone"), 12, "each delete is followed by a tombstone");
    // Updates before the restart: 33 rows with id % 3 == 0 (the update
    // comes before the delete in its transaction), and one rename.
    let before_updates = events_before
        .iter()
        .filter(|r| r.value.as_deref().is_some_and(|v| v.windows(8).any(|w| w == b"\"op\":\"u\"")))
        .count();
    assert_eq!(before_updates, 36, "33 balance updates, one rename, two of a large note");
    assert_eq!(count("c"), 3, "inserts: 101 twice, and 500");
    let first: serde_json::Value = serde_json::from_slice(
        events.iter().rev().find(|r| r.value.is_some()).and_then(|r| r.value.as_deref()).expect("one"),
    )
    .expect("json");
    let source = &first["payload"]["source"];
    assert_eq!(source["table"], "accounts");
    assert_eq!(source["connector"], "postgresql");
    assert!(source["lsn"].as_i64().is_some_and(|l| l > 0) && source["txId"].as_i64().is_some(), "{source}");
    // The slot was advanced past what is in the log.
    let lag = pg.psql(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) < 1000000 FROM pg_replication_slots \
         WHERE slot_name = 'plexus_test'",
    );
    assert_eq!(lag, "t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_the_server_refuses_go_to_the_dead_letters_and_the_rest_is_written() {
    let pg = Postgres::start();
    pg.psql("CREATE TABLE things (id bigint PRIMARY KEY, uid uuid, born date)");
    let connect = Connect::new();
    connect.log.create_topic("things", 1, plexus_core::TopicConfig::default()).expect("topic");
    let producer = EmbeddedProducer::new(connect.log.clone(), ProducerConfig::default()).expect("producer");
    let rows = [
        r#"{"id": 1, "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "born": "0044-03-15 BC"}"#,
        // Text a uuid column does not take: only the server can tell.
        r#"{"id": 2, "uid": "not a uuid", "born": "2024-01-01"}"#,
        // Past the last date PostgreSQL has: refused before it is sent.
        r#"{"id": 3, "uid": null, "born": "5874898-01-01"}"#,
        r#"{"id": 4, "uid": null, "born": "+10000-01-01"}"#,
    ];
    for (i, row) in rows.iter().enumerate() {
        producer
            .send("things", Record::with_key(format!(r#"{{"id": {}}}"#, i + 1), (*row).to_owned()))
            .await
            .expect("ack");
    }
    connect
        .start(&format!(
            r#"{{"name": "things", "config": {{"connector.class": "PostgresSink", "connection.url": "{}",
                "topics": "things", "insert.mode": "upsert", "pk.mode": "record_key", "errors.tolerance": "all",
                "errors.deadletterqueue.topic.name": "things-dlq", "offset.flush.interval.ms": "50"}}}}"#,
            pg.url
        ))
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while pg.psql("SELECT count(*) FROM things") != "2" || connect.read("things-dlq").await.len() < 2 {
        assert!(Instant::now() < deadline, "never written: {:?}", connect.worker.status("things"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        pg.psql("SELECT string_agg(id || ' ' || born, ',' ORDER BY id) FROM things"),
        "1 0044-03-15 BC,4 10000-01-01"
    );
    let dead = connect.read("things-dlq").await;
    let reasons = super::dead_letter_reasons(&dead);
    assert!(
        reasons.iter().any(|r| r.starts_with("column \"born\": ") && r.contains("outside the range of type date")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("table things: invalid input syntax for type uuid")), "{reasons:?}");
    assert_eq!(
        dead.iter().filter(|r| r.value.as_deref().is_some_and(|v| v.windows(10).any(|w| w == b"not a uuid"))).count(),
        1,
        "the refused record as it was"
    );
    assert_eq!(connect.worker.status("things").expect("status").state, plexus_connectors::State::Running);
    connect.worker.stop_all().await;
}
