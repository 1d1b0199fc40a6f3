//! The DSL operators through the test driver, one module per operator family.

mod aggregate;
mod joins;
mod runtime;
mod stateless;
mod windows;

use plexus_runtime::TopologyTestDriver;
use plexus_runtime::serde::Serde;

/// Pipes `(key, value, timestamp)` records into `topic`.
pub(crate) fn pipe<K, V>(
    driver: &mut TopologyTestDriver,
    topic: &str,
    serdes: (&dyn Serde<K>, &dyn Serde<V>),
    records: &[(K, V, i64)],
) {
    for (k, v, ts) in records {
        driver.pipe_input(topic, serdes.0, serdes.1, k, v, *ts).expect("pipe");
    }
}

/// The `(key, value)` pairs written to `topic` since the last read.
pub(crate) fn read<K, V>(
    driver: &mut TopologyTestDriver,
    topic: &str,
    serdes: (&dyn Serde<K>, &dyn Serde<V>),
) -> Vec<(K, V)> {
    driver.read_output(topic, serdes.0, serdes.1).expect("read").into_iter().map(|r| (r.key, r.value)).collect()
}

/// `&str` pairs as owned strings.
pub(crate) fn owned<V: Clone>(pairs: &[(&str, V)]) -> Vec<(String, V)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}
