//! Payments: records keyed by payer ("Alice") with values like
//! "Paid $200 to Bob"; the total paid per payer is a KTable, updated with
//! every payment and queryable while the application runs.
//!
//! ```sh
//! cargo run --release --example payments
//! ```

mod support;

use plexus_dsl::{Consumed, Materialized, Produced, StreamsBuilder};
use plexus_runtime::serde::{I64Serde, StringSerde};
use plexus_runtime::state::KeyValueStoreRef;

const PAYMENTS: &[(&str, &str)] = &[
    ("Alice", "Paid $200 to Bob"),
    ("Bob", "Paid $50 to Carol"),
    ("Alice", "Paid $35 to Carol"),
    ("Carol", "Paid $120 to Alice"),
    ("Alice", "Paid $15 to Bob"),
    ("Bob", "bought a coffee"),
];

/// The amount of "Paid $N to X", in dollars.
fn amount(text: &str) -> Option<i64> {
    text.strip_prefix("Paid $")?.split_whitespace().next()?.parse().ok()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let example = support::Example::new(&[("payments", 2), ("totals", 2)])?;
    let records: Vec<(&str, &[u8], i64)> =
        PAYMENTS.iter().enumerate().map(|(i, (k, v))| (*k, v.as_bytes(), i as i64)).collect();
    example.produce("payments", &records).await?;

    let builder = StreamsBuilder::new();
    builder
        .stream("payments", Consumed::with(StringSerde, StringSerde))
        .peek(|payer, text| {
            if amount(text).is_none() {
                eprintln!("  skipping {payer}'s {text:?}: not a payment");
            }
        })
        .flat_map_values(|text| amount(&text))
        .group_by_key()
        .reduce(|total, paid| total + paid, Materialized::named("totals").with_value_serde(I64Serde))
        .to("totals", Produced::with(StringSerde, I64Serde));
    let mut streams = example.start(builder.build()?, "payments")?;

    let updates = example.read("totals", PAYMENTS.len() - 1).await?;
    println!("{} updates of the totals table; total paid per payer:", updates.len());
    let totals = streams.store(&KeyValueStoreRef::new("totals", StringSerde, I64Serde));
    let all = support::eventually(|| Ok(totals.all().ok().filter(|all| all.len() == 3))).await?;
    for (payer, total) in all {
        println!("  {payer:<6} ${total}");
    }
    streams.close()?;
    Ok(())
}
