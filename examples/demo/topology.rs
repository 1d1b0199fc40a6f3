//! The topology `plexus demo` runs, written with the DSL: payments (JSON
//! values, as the `FileSource` reads the CSV) re-keyed by payer, then
//!
//! - the total paid per payer, a `KTable` materialized as the store
//!   `payment-totals` (queryable) and written to the topic `payment-totals`;
//! - the count and sum per payer per 1-minute event-time window, final
//!   results only (`suppress`), written to the topic `payment-windows`.
//!
//! Copy it, change it, and run it with `plexus_runtime::Streams`.

use std::time::Duration;

use plexus_dsl::{
    BufferConfig, Consumed, Grouped, Materialized, Produced, StreamsBuilder, Suppressed, TimeWindows, WindowedSerde,
};
use plexus_runtime::Topology;
use plexus_runtime::serde::{BytesSerde, Json, OptionSerde, StringSerde};
use serde::{Deserialize, Serialize};

/// One line of the payments file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payment {
    /// Who paid.
    pub payer: String,
    /// Who was paid.
    pub payee: String,
    /// How much, in dollars.
    pub amount: f64,
    /// When, in milliseconds since the epoch (the event time).
    pub ts: i64,
}

/// What is kept per payer (and per payer and window).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Payments counted.
    pub count: u64,
    /// Their sum, in cents.
    pub total_cents: i64,
}

impl Totals {
    fn add(self, payment: &Payment) -> Self {
        Self { count: self.count + 1, total_cents: self.total_cents + cents(payment.amount) }
    }
}

/// A payer's totals as written to the topic `payment-totals` (the payer
/// inside the value too, so that a file of values says whose they are).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayerTotals {
    /// The payer.
    pub payer: String,
    /// Payments counted.
    pub count: u64,
    /// Their sum, in cents.
    pub total_cents: i64,
}

/// Dollars to whole cents.
#[allow(clippy::cast_possible_truncation)] // amounts are far below 2^63 cents
pub fn cents(amount: f64) -> i64 {
    (amount * 100.0).round() as i64
}

/// The store holding the total per payer.
pub const TOTALS_STORE: &str = "payment-totals";

/// Builds the topology.
pub fn build() -> plexus_runtime::Result<Topology> {
    let builder = StreamsBuilder::new();
    let by_payer = builder
        .stream(
            "payments",
            Consumed::with(OptionSerde(BytesSerde), Json::<Payment>::new()).with_timestamp_extractor(|_, p, _| p.ts),
        )
        .select_key(|_, p| p.payer.clone())
        .group_by_key_with(Grouped::with(StringSerde, Json::<Payment>::new()));
    by_payer
        .aggregate(
            Totals::default,
            |_, p, t| t.add(&p),
            Materialized::named(TOTALS_STORE).with_value_serde(Json::<Totals>::new()),
        )
        .to_stream()
        .map(|payer, totals| {
            let row = totals.map(|t| PayerTotals { payer: payer.clone(), count: t.count, total_cents: t.total_cents });
            (payer, row)
        })
        .to("payment-totals", Produced::with(StringSerde, OptionSerde(Json::<PayerTotals>::new())));
    by_payer
        .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(60)))
        .aggregate(
            Totals::default,
            |_, p, t| t.add(&p),
            Materialized::named("payment-windows").with_value_serde(Json::<Totals>::new()),
        )
        .suppress(Suppressed::until_window_closes(BufferConfig::unbounded()))
        .to_stream()
        .to("payment-windows", Produced::with(WindowedSerde::new(StringSerde), OptionSerde(Json::<Totals>::new())));
    builder.build()
}
