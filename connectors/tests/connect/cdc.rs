//! Change data capture that never loses, duplicates or alters a value:
//! every PostgreSQL type through the snapshot and the stream into a
//! table, with and without schemas; a key change; a crash between the
//! log commit and the slot's move; a slot still held by a dead client's
//! backend; sinks starting together on one database.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Connect;
use super::pg::Postgres;

/// Every kind of column PostgreSQL has built in (and a domain, an enum,
/// arrays of several dimensions).
const EVERY_TYPE: &str = "(id int PRIMARY KEY, b boolean, i2 smallint, i4 integer, i8 bigint, f4 real, \
    f8 double precision, n numeric, n2 numeric(20,6), t text, vc varchar(10), ch char(3), by bytea, d date, \
    tm time, tmtz timetz, ts timestamp, tstz timestamptz, iv interval, m money, ip inet, net cidr, mac macaddr, \
    mac8 macaddr8, bits bit(4), vbits varbit, u uuid, j json, jb jsonb, x xml, pt point, ln line, sg lseg, bx box, \
    pth path, pg polygon, c circle, r int4range, tr tstzrange, mr int4multirange, dom posint, e mood, \
    tv tsvector, tq tsquery, o oid, l pg_lsn, ai int[], at text[], a2 int[][], af float8[], ad date[], \
    ats timestamptz[], an numeric[])";

/// Rows at the edges of every type: NaN and the infinities, BC dates,
/// years past 9999, `24:00:00`, the ends of each range, text that needs
/// escaping, and a row of NULLs.
const EDGE_ROWS: &[&str] = &[
    "(1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    "(2, true, 32767, -2147483648, 9223372036854775807, 0.1, 1.7976931348623157e308, 123456789012345678901234567890.123456789, \
     99999999999999.999999, E'tab\\there \"q\" \\\\ back\\nline ünï', 'ten chars!', 'ab', '\\x00ff10', '2024-02-29', \
     '23:59:59.999999', '12:00:00+05:30', '2024-01-01 00:00:00.000001', '2024-06-01 12:34:56.789012+02', \
     '1 year 2 mons -3 days 04:05:06.789', 12.34, '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', \
     '08:00:2b:01:02:03:04:05', B'1010', B'10101', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', \
     '{\"b\": [1, 2.50], \"a\": null}', '{\"b\": [1, 2.50], \"a\": null}', '<a x=\"1\">t</a>', '(1.5,2)', \
     '{1,-1,0}', '[(0,0),(1,1)]', '((0,0),(1,1))', '[(0,0),(1,1),(2,0)]', '((0,0),(1,1),(2,0))', '<(0,0),2.5>', \
     '[1,10)', '[2024-01-01 00:00:00+00,infinity)', '{[1,3),[5,7)}', 7, 'happy', 'a fat cat', 'fat & (rat | cat)', \
     4294967295, '16/B374D848', '{1,NULL,-3}', '{\"a b\",NULL,\"c,d\",\"\\\\\\\"\"}', '{{1,2},{3,4}}', \
     '{NaN,Infinity,-Infinity,0.5}', '{2024-01-01,infinity,0044-03-15 BC}', \
     '{\"2024-01-01 00:00:00.5+00\",-infinity}', '{1.50,NaN,-0.001}')",
    "(3, false, -32768, 2147483647, -9223372036854775808, 'NaN', 'NaN', 'NaN', -0.000001, '', '', '', '\\x', \
     '0044-03-15 BC', '24:00:00', '24:00:00-15:59', 'infinity', '-infinity', '-178000000 years', -92233720368547758.08, \
     '::1', '::/0', '00:00:00:00:00:00', '00:00:00:00:00:00:00:00', B'0000', B'', '00000000-0000-0000-0000-000000000000', \
     '[]', '{}', '<empty/>', '(-0,1e-300)', '{0,1,0}', '[(1e300,1),(1,1)]', '((0,0),(0,0))', '((0,0))', '((0,0))', \
     '<(0,0),0>', 'empty', '(,)', '{}', 1, 'sad', '', '!a', 0, '0/0', '{}', '{}', '{}', '{}', '{}', '{}', '{}')",
    "(4, true, 0, 0, 0, 'Infinity', '-Infinity', 'Infinity', 0, 'x', 'x', 'x', '\\xdeadbeef', '10000-01-01', \
     '00:00:00', '00:00:00+00', '10000-01-01 00:00:00.000001', '4713-01-01 00:00:00+00 BC', '178000000 years', \
     92233720368547758.07, '255.255.255.255', '255.255.255.255/32', 'ff:ff:ff:ff:ff:ff', 'ff:ff:ff:ff:ff:ff:ff:ff', \
     B'1111', B'1', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '1e400', '1e400', '<?xml version=\"1.0\"?><r/>', \
     '(0,0)', '{1,0,-5}', '[(0,0),(0,1)]', '((0,0),(0,0))', '((0,0),(1,1))', '((0,0),(1,1))', '<(1,1),1e-10>', \
     '(,5]', '(,2024-01-01 00:00:00+00)', '{(,5]}', 2147483647, 'ok', 'z', 'z', 1, 'FFFFFFFF/FFFFFFFF', \
     '{2147483647}', '{\"\"}', '{{NULL,NULL}}', '{-0}', '{5874897-12-31,-infinity}', '{infinity}', '{-Infinity}')",
    "(5, NULL, 1, 1, 1, '-Infinity', '4.9e-324', '-Infinity', 1, ' leading and trailing ', 'é', 'é', '\\x00', \
     '5874897-12-31', '00:00:00.000001', '23:59:59.999999+15:59', '294246-12-31 23:59:59.999999', \
     '4714-11-24 00:00:00+00 BC', '-1 microseconds', 0, '1.2.3.4', '1.2.3.0/24', '01:02:03:04:05:06', \
     '01:02:03:04:05:06:07:08', B'0101', B'0101010101', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', \
     '\"\\\\u0000 is allowed in json\"', '\"ünï\"', 'text only', '(1,1)', '{0,1,1}', '[(0,0),(2,2)]', '((2,2),(1,1))', \
     '[(0,0)]', '((5,5))', '<(1,2),3>', '[-2147483648,2147483647)', '[-infinity,infinity]', '{[1,2),[3,4),[5,6)}', \
     2, 'happy', 'ünï', 'ünï', 42, '0/1', '{-2147483648}', '{NULL}', '{}', '{1e-300}', '{1970-01-01}', \
     '{\"1970-01-01 00:00:00+00\"}', '{123456789012345678901234567890}')",
];

fn setup_types(pg: &Postgres) {
    pg.psql("CREATE DOMAIN posint AS int CHECK (VALUE > 0); CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')");
}

/// A table's rows as text, one per line, sorted.
fn table_text(pg: &Postgres, table: &str) -> String {
    pg.psql(&format!("SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY id), '') FROM {table} t"))
}

/// Rows of `a` that are not in `b`, compared as text (json, xml and the
/// geometric types have no equality operator).
fn except(pg: &Postgres, a: &str, b: &str) -> String {
    pg.psql(&format!(
        "SELECT coalesce(string_agg(x, E'\\n'), '') FROM (SELECT t::text AS x FROM {a} t EXCEPT ALL SELECT t::text FROM {b} t) d"
    ))
}

/// Waits until `copy` equals `table` by `EXCEPT` both ways.
async fn until_same(connect: &Connect, pg: &Postgres, table: &str, copy: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (missing, extra) = (except(pg, table, copy), except(pg, copy, table));
        if missing.is_empty() && extra.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            let status: Vec<_> = connect.worker.connectors().iter().map(|c| connect.worker.status(c)).collect();
            panic!(
                "{what}: {copy} never equalled {table}.\nmissing from the copy:\n{missing}\nonly in the copy:\n{extra}\n\
                 connectors: {status:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn cdc(name: &str, url: &str, prefix: &str, slot: &str, tables: &str, extra: &str) -> String {
    format!(
        r#"{{"name": "{name}", "config": {{"connector.class": "PostgresCdcSource", "connection.url": "{url}",
            "topic.prefix": "{prefix}", "table.include.list": "{tables}", "slot.name": "{slot}",
            "poll.interval.ms": "50"{extra}}}}}"#
    )
}

/// A sink of change events: each event's `after` (a delete's is null, so
/// it deletes, as its tombstone does again).
fn sink(name: &str, url: &str, topic: &str, table: &str, extra: &str) -> String {
    format!(
        r#"{{"name": "{name}", "config": {{"connector.class": "PostgresSink", "connection.url": "{url}",
            "topics": "{topic}", "table.name.format": "{table}", "insert.mode": "upsert", "pk.mode": "record_key",
            "delete.enabled": "true", "offset.flush.interval.ms": "50",
            "transforms": "after", "transforms.after.type": "ExtractField$Value", "transforms.after.field": "after"{extra}}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_postgres_value_round_trips_through_snapshot_stream_and_sink_with_and_without_schemas() {
    let pg = Postgres::start();
    setup_types(&pg);
    pg.psql(&format!(
        "CREATE TABLE every {EVERY_TYPE}; CREATE TABLE every_typed (LIKE every); CREATE TABLE every_plain (LIKE every); \
         CREATE TABLE every_query (LIKE every); ALTER TABLE every_typed ADD PRIMARY KEY (id); \
         ALTER TABLE every_plain ADD PRIMARY KEY (id); ALTER TABLE every_query ADD PRIMARY KEY (id)"
    ));
    // Half the rows before the start (the snapshot), half after (the stream).
    let (snapshot, streamed) = EDGE_ROWS.split_at(3);
    pg.psql(&format!("INSERT INTO every VALUES {}", snapshot.join(", ")));
    let connect = Connect::new();
    let plain = r#", "key.converter.schemas.enable": "false", "value.converter.schemas.enable": "false""#;
    // With schemas: the PostgreSQL sources' default.
    connect.start(&cdc("typed", &pg.url, "typed", "typed_slot", "public\\\\.every", "")).await;
    connect.start(&cdc("plain", &pg.url, "plain", "plain_slot", "public\\\\.every", plain)).await;
    connect.start(&sink("typed-sink", &pg.url, "typed.public.every", "every_typed", "")).await;
    connect.start(&sink("plain-sink", &pg.url, "plain.public.every", "every_plain", plain)).await;
    // And by query (PostgresSource in bulk mode), into a third copy.
    connect
        .start(&format!(
            r#"{{"name": "query", "config": {{"connector.class": "PostgresSource", "connection.url": "{}",
                "mode": "bulk", "table.whitelist": "every", "topic.prefix": "q-", "poll.interval.ms": "200"}}}}"#,
            pg.url
        ))
        .await;
    connect
        .start(&format!(
            r#"{{"name": "query-sink", "config": {{"connector.class": "PostgresSink", "connection.url": "{}",
                "topics": "q-every", "table.name.format": "every_query", "insert.mode": "upsert",
                "pk.mode": "record_key", "offset.flush.interval.ms": "50"}}}}"#,
            pg.url
        ))
        .await;
    until_same(&connect, &pg, "every", "every_typed", "the snapshot, with schemas").await;
    until_same(&connect, &pg, "every", "every_plain", "the snapshot, plain JSON").await;
    until_same(&connect, &pg, "every", "every_query", "by query").await;

    pg.psql(&format!("INSERT INTO every VALUES {}", streamed.join(", ")));
    // Each row takes the values of another, streamed as updates.
    pg.psql(
        "UPDATE every e SET (b, f4, f8, n, d, tm, ts, tstz, a2, ats) = \
         (SELECT b, f4, f8, n, d, tm, ts, tstz, a2, ats FROM every o WHERE o.id = 6 - e.id)",
    );
    until_same(&connect, &pg, "every", "every_typed", "streamed, with schemas").await;
    until_same(&connect, &pg, "every", "every_plain", "streamed, plain JSON").await;
    until_same(&connect, &pg, "every", "every_query", "by query, after the changes").await;
    let status: Vec<_> =
        connect.worker.connectors().iter().map(|c| connect.worker.status(c).expect("status")).collect();
    assert!(status.iter().all(|s| s.state == plexus_connectors::State::Running), "{status:?}");
    assert_eq!(table_text(&pg, "every"), table_text(&pg, "every_typed"));
    connect.worker.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_a_list_cannot_hold_goes_to_the_dead_letters_named_never_changed() {
    let pg = Postgres::start();
    pg.psql(
        "CREATE TABLE odd (id int PRIMARY KEY, a int[], n numeric(10,2)); CREATE TABLE odd_copy (LIKE odd INCLUDING ALL); \
         INSERT INTO odd VALUES (1, '{1,2}', 1.5), (2, '[0:1]={1,2}', 2), (3, '{3}', 'NaN')",
    );
    let connect = Connect::new();
    let dlq = r#", "errors.tolerance": "all", "errors.deadletterqueue.topic.name": "odd-dlq""#;
    connect.start(&cdc("odd", &pg.url, "odd", "odd_slot", "public\\\\.odd", dlq)).await;
    connect.start(&sink("odd-sink", &pg.url, "odd.public.odd", "odd_copy", "")).await;
    pg.psql("INSERT INTO odd VALUES (4, '{4}', 4), (5, '[2:2]={5}', 5)");
    let deadline = Instant::now() + Duration::from_secs(30);
    while pg.psql("SELECT string_agg(id::text, ',' ORDER BY id) FROM odd_copy") != "1,4" {
        assert!(Instant::now() < deadline, "rows 1 and 4 never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dead = connect.read("odd-dlq").await;
    let reasons = super::dead_letter_reasons(&dead);
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].starts_with("column \"a\": the array \"[0:1]={1,2}\" has bounds [0:1]"), "{reasons:?}");
    assert!(reasons[1].starts_with("column \"n\": \"NaN\" is not an exact decimal"), "{reasons:?}");
    assert!(reasons[2].starts_with("column \"a\": the array \"[2:2]={5}\""), "{reasons:?}");
    assert_eq!(pg.psql("SELECT count(*) FROM odd_copy WHERE n IS NULL OR a IS NULL"), "0", "never a NULL instead");
    connect.worker.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_include_list_cdc_leaves_out_what_plexus_sinks_write() {
    let pg = Postgres::start();
    pg.psql("CREATE TABLE src (id int PRIMARY KEY, v text); CREATE TABLE src_copy (LIKE src INCLUDING ALL)");
    pg.psql("INSERT INTO src SELECT i, 'v' || i FROM generate_series(1, 50) i");
    let connect = Connect::new();
    connect
        .start(&format!(
            r#"{{"name": "all", "config": {{"connector.class": "PostgresCdcSource", "connection.url": "{}",
                "topic.prefix": "all", "poll.interval.ms": "50"}}}}"#,
            pg.url
        ))
        .await;
    connect.start(&sink("copy", &pg.url, "all.public.src", "src_copy", "")).await;
    until_same(&connect, &pg, "src", "src_copy", "the snapshot").await;
    pg.psql("INSERT INTO src VALUES (51, 'new'); UPDATE src SET v = 'changed' WHERE id < 10");
    until_same(&connect, &pg, "src", "src_copy", "streamed").await;
    // A marker after the copy's writes: once it is in, they would be too.
    pg.psql("INSERT INTO src VALUES (52, 'marker')");
    until_same(&connect, &pg, "src", "src_copy", "the marker").await;
    let topics = connect.log.topic_names();
    assert!(!topics.iter().any(|t| t.contains("src_copy") || t.contains("plexus_connect")), "{topics:?}");
    connect.worker.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrays_as_strings_keep_their_bounds_and_dimensions_exactly() {
    let pg = Postgres::start();
    pg.psql(
        "CREATE TABLE arr (id int PRIMARY KEY, a int[], t text[]); CREATE TABLE arr_copy (LIKE arr INCLUDING ALL); \
         INSERT INTO arr VALUES (1, '[0:1]={1,2}', '{\"x y\",NULL}'), (2, '{{1,2},{3,4}}', '[2:3][1:1]={{a},{b}}')",
    );
    let connect = Connect::new();
    let mode = r#", "array.handling.mode": "string""#;
    connect.start(&cdc("arr", &pg.url, "arr", "arr_slot", "public\\\\.arr", mode)).await;
    connect.start(&sink("arr-sink", &pg.url, "arr.public.arr", "arr_copy", "")).await;
    until_same(&connect, &pg, "arr", "arr_copy", "the snapshot").await;
    pg.psql("INSERT INTO arr VALUES (3, '[-5:-4]={7,8}', '{}'); UPDATE arr SET a = '[1:1][3:4]={{5,6}}' WHERE id = 1");
    until_same(&connect, &pg, "arr", "arr_copy", "streamed").await;
    assert_eq!(pg.psql("SELECT a FROM arr_copy WHERE id = 3"), "[-5:-4]={7,8}");
    connect.worker.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_large_value_is_read_from_the_table_under_the_default_replica_identity() {
    let pg = Postgres::start();
    pg.psql(
        "CREATE TABLE doc (id int PRIMARY KEY, title text, body text); CREATE TABLE doc_copy (LIKE doc INCLUDING ALL); \
         INSERT INTO doc VALUES (1, 'a', (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 500) i))",
    );
    let connect = Connect::new();
    connect.start(&cdc("doc", &pg.url, "docs", "doc_slot", "public\\\\.doc", "")).await;
    connect.start(&sink("doc-sink", &pg.url, "docs.public.doc", "doc_copy", "")).await;
    until_same(&connect, &pg, "doc", "doc_copy", "the snapshot").await;
    // The body is TOASTed and left alone: the server does not send it.
    pg.psql("UPDATE doc SET title = 'b' WHERE id = 1");
    until_same(&connect, &pg, "doc", "doc_copy", "after an update that left the body alone").await;
    assert_eq!(pg.psql("SELECT length(body) FROM doc_copy"), "16000");
    connect.worker.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_key_update_is_a_delete_of_the_old_key_and_a_create_of_the_new() {
    let pg = Postgres::start();
    pg.psql(
        "CREATE TABLE acct (id int PRIMARY KEY, owner text); CREATE TABLE acct_copy (LIKE acct INCLUDING ALL); \
         INSERT INTO acct VALUES (1, 'ada'), (2, 'bob')",
    );
    let connect = Connect::new();
    connect.start(&cdc("acct", &pg.url, "shop", "acct_slot", "public\\\\.acct", "")).await;
    connect.start(&sink("acct-sink", &pg.url, "shop.public.acct", "acct_copy", "")).await;
    until_same(&connect, &pg, "acct", "acct_copy", "the snapshot").await;
    pg.psql("UPDATE acct SET id = 3 WHERE id = 2");
    pg.psql("UPDATE acct SET id = 10 + id, owner = owner || '!'");
    until_same(&connect, &pg, "acct", "acct_copy", "after the key changes").await;
    assert_eq!(pg.psql("SELECT string_agg(id || owner, ',' ORDER BY id) FROM acct_copy"), "11ada!,13bob!");
    connect.worker.stop_all().await;
    let events: Vec<String> = connect
        .read("shop.public.acct")
        .await
        .iter()
        .map(|r| match r.value.as_deref() {
            None => {
                let key: serde_json::Value = serde_json::from_slice(r.key.as_deref().unwrap_or_default()).expect("key");
                format!("tombstone {}", key["payload"]["id"])
            }
            Some(v) => {
                let json: serde_json::Value = serde_json::from_slice(v).expect("json");
                let p = &json["payload"];
                let id = if p["op"] == "d" { &p["before"]["id"] } else { &p["after"]["id"] };
                format!("{} {id}", p["op"].as_str().unwrap_or("?"))
            }
        })
        .collect();
    let key = |id: u8| format!("tombstone {id}");
    assert_eq!(
        events,
        vec![
            "r 1".to_owned(),
            "r 2".to_owned(),
            "d 2".to_owned(),
            key(2),
            "c 3".to_owned(),
            "d 1".to_owned(),
            key(1),
            "c 11".to_owned(),
            "d 3".to_owned(),
            key(3),
            "c 13".to_owned(),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_before_the_slot_moved_the_stream_goes_on_without_a_duplicate() {
    let pg = Postgres::start();
    pg.psql("CREATE TABLE ev (id int PRIMARY KEY, at timestamptz DEFAULT now())");
    let mut connect = Connect::new();
    // Small peeks: a window made only of transactions already in the log.
    let config = cdc("ev", &pg.url, "app", "ev_slot", "public\\\\.ev", r#", "max.batch.size": "4""#);
    connect.start(&config).await;
    super::until("the slot exists", || {
        pg.psql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'ev_slot'") == "1"
    })
    .await;
    // The slot as it was: restoring it later is a crash after the log
    // commit and before the slot moved.
    pg.psql("SELECT pg_copy_logical_replication_slot('ev_slot', 'ev_backup')");
    for i in 1..=30 {
        pg.psql(&format!("INSERT INTO ev (id) VALUES ({i})"));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while inserted_ids(&connect).await.len() < 30 {
        assert!(Instant::now() < deadline, "the 30 inserts never reached the log");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    connect.worker.stop_all().await;
    pg.psql(
        "SELECT pg_drop_replication_slot('ev_slot'); SELECT pg_copy_logical_replication_slot('ev_backup', 'ev_slot')",
    );
    connect.restart_worker();
    connect.start(&config).await;
    pg.psql("INSERT INTO ev (id) VALUES (31)");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ids = inserted_ids(&connect).await;
        if ids.contains(&31) {
            assert_eq!(ids, (1..=31).collect::<Vec<_>>(), "each insert once, in order");
            break;
        }
        assert!(Instant::now() < deadline, "the stream stalled after the restored slot: {ids:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    connect.worker.stop_all().await;
}

/// The ids of the inserts in `app.public.ev`, in log order.
async fn inserted_ids(connect: &Connect) -> Vec<i64> {
    connect
        .read("app.public.ev")
        .await
        .iter()
        .filter_map(|r| r.value.as_deref())
        .map(|v| {
            let json: serde_json::Value = serde_json::from_slice(v).expect("json");
            json["payload"]["after"]["id"].as_i64().unwrap_or(-1)
        })
        .collect()
}

/// `pg_recvlogical` holding a slot, as a dead client's backend does until
/// the server notices.
fn hold_slot(pg: &Postgres, slot: &str, application: &str) -> Child {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .expect("postgresql")
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin/pg_recvlogical"))
        .find(|p| p.exists())
        .expect("pg_recvlogical");
    let child = Command::new(bin)
        .args(["-d", &pg.url, "--slot", slot, "--start", "--no-loop", "-f", "/dev/null", "-o", "proto_version=1"])
        .args(["-o", "publication_names=plexus_publication"])
        .env("PGAPPNAME", application)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pg_recvlogical");
    let deadline = Instant::now() + Duration::from_secs(20);
    while pg.psql(&format!("SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'")) != "t" {
        assert!(Instant::now() < deadline, "pg_recvlogical never took the slot");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_still_held_by_a_dead_instance_is_taken_over() {
    let pg = Postgres::start();
    pg.psql("CREATE TABLE held (id int PRIMARY KEY); CREATE PUBLICATION plexus_publication FOR ALL TABLES");
    pg.psql("SELECT pg_create_logical_replication_slot('held_slot', 'pgoutput')");
    // The backend of a killed `plexus connect run` of this connector.
    let mut holder = hold_slot(&pg, "held_slot", "plexus-connect-held");
    let connect = Connect::new();
    connect
        .start(&cdc("held", &pg.url, "app", "held_slot", "public\\\\.held", r#", "snapshot.mode": "no_data""#))
        .await;
    pg.psql("INSERT INTO held VALUES (1)");
    let count = || connect.log.offsets(&plexus_core::TopicPartition::new("app.public.held", 0)).map_or(0, |o| o.2);
    let deadline = Instant::now() + Duration::from_secs(60);
    while count() == 0 {
        let status = connect.worker.status("held").expect("status");
        assert!(Instant::now() < deadline, "the change never arrived: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while holder.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "the stale holder's backend was never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    connect.worker.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_starting_together_on_one_database_all_start() {
    let pg = Postgres::start();
    for round in 0..4 {
        pg.psql("DROP TABLE IF EXISTS plexus_connect_offsets");
        let connect = Connect::new();
        connect.log.create_topic("in", 1, plexus_core::TopicConfig::default()).expect("topic");
        let configs: Vec<String> = (0..6)
            .map(|i| {
                format!(
                    r#"{{"name": "s{i}", "config": {{"connector.class": "PostgresSink", "connection.url": "{}",
                        "topics": "in", "table.name.format": "t{i}", "auto.create": "true"}}}}"#,
                    pg.url
                )
            })
            .collect();
        let starts = configs.iter().map(|c| connect.start(c));
        futures_util::future::join_all(starts).await;
        // Each opens its connection (and the offsets table) as it starts.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let states: Vec<_> = (0..6).map(|i| connect.worker.status(&format!("s{i}")).expect("status")).collect();
            assert!(states.iter().all(|s| s.state == plexus_connectors::State::Running), "round {round}: {states:?}");
            let opened =
                pg.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'plexus-connect-s_'");
            if opened == "6" && pg.psql("SELECT to_regclass('plexus_connect_offsets') IS NOT NULL") == "t" {
                break;
            }
            assert!(Instant::now() < deadline, "round {round}: the sinks never opened");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // What a failure after the table was made would show.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for i in 0..6 {
            let status = connect.worker.status(&format!("s{i}")).expect("status");
            assert_eq!(status.state, plexus_connectors::State::Running, "round {round}: {status:?}");
        }
        connect.worker.stop_all().await;
    }
}
