//! Orders enriched with customers: a stream of orders keyed by customer id
//! joined with the customers table (a KStream–KTable join), each order
//! seeing the customer as they were when it arrived.
//!
//! ```sh
//! cargo run --release --example orders_enriched
//! ```

mod support;

use plexus_dsl::{Consumed, Materialized, Produced, StreamsBuilder};
use plexus_runtime::serde::{Json, StringSerde};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Customer {
    name: String,
    tier: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    id: u32,
    item: String,
    cents: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EnrichedOrder {
    order: u32,
    item: String,
    customer: String,
    tier: String,
    cents: u64,
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let example = support::Example::new(&[("customers", 2), ("orders", 2), ("enriched-orders", 2)])?;
    let customer = |name: &str, tier: &str| json(&Customer { name: name.into(), tier: tier.into() });
    let (ada, grace) = (customer("Ada Lovelace", "gold"), customer("Grace Hopper", "silver"));
    example.produce("customers", &[("c1", &ada, 0), ("c2", &grace, 0)]).await?;
    let order = |id, item: &str, cents| json(&Order { id, item: item.into(), cents });
    let orders =
        [order(1, "keyboard", 4_900), order(2, "monitor", 19_900), order(3, "cable", 900), order(4, "desk", 35_000)];
    example
        .produce(
            "orders",
            &[("c1", &orders[0], 1), ("c2", &orders[1], 2), ("c9", &orders[2], 3), ("c1", &orders[3], 4)],
        )
        .await?;

    let builder = StreamsBuilder::new();
    let customers = builder.table(
        "customers",
        Consumed::with(StringSerde, Json::<Customer>::new()),
        Materialized::named("customers"),
    );
    builder
        .stream("orders", Consumed::with(StringSerde, Json::<Order>::new()))
        .join(&customers, |o, c| EnrichedOrder {
            order: o.id,
            item: o.item.clone(),
            customer: c.name.clone(),
            tier: c.tier.clone(),
            cents: o.cents,
        })
        .to("enriched-orders", Produced::with(StringSerde, Json::<EnrichedOrder>::new()));
    let topology = builder.build()?;
    println!("{}", topology.describe());
    let mut streams = example.start(topology, "orders-enriched")?;

    // Order 3's customer c9 is unknown: an inner join drops it.
    let enriched = example.read("enriched-orders", 3).await?;
    println!("enriched orders:");
    for r in &enriched {
        let e: EnrichedOrder = serde_json::from_slice(r.value.as_deref().unwrap_or_default())?;
        println!("  order {} ({}) by {} [{}]: ${:.2}", e.order, e.item, e.customer, e.tier, e.cents as f64 / 100.0);
    }
    streams.close()?;
    Ok(())
}
