//! The foreign-key table–table join (Kafka's KIP-213): each row of the
//! left table points at a row of the right table through a key computed
//! from its value, and the two tables need not be co-partitioned.
//!
//! Three steps, each in the task that owns the data it needs:
//! 1. A left row's change sends a *subscription* to
//!    `<name>-subscription-registration`, keyed by the foreign key: "add
//!    left key k with value hash h" for the new foreign key, "remove k" for
//!    the old one when it changed or the row went away.
//! 2. The task of the right table's partition keeps the subscriptions in a
//!    store keyed by (foreign key, left key); a subscription, or a change of
//!    the right row, sends a *response* — the value hash and the right
//!    row's value — to `<name>-subscription-response`, keyed by the left key.
//! 3. The left table's task joins a response with the left row as it is
//!    now, and drops it when the row changed since (the hash differs): only
//!    the newest subscription's answer counts. The result is kept in its own
//!    store, so that deletions carry the old result.
//!
//! The value hash is 64-bit FNV-1a over the left value's bytes, written
//! here because it must stay the same across Rust versions (it is stored
//! in the subscription store).

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use plexus_runtime::processor::{ProcessorContext, Record};
use plexus_runtime::serde::{BytesSerde, Serde};
use plexus_runtime::state::KeyValueStoreRef;
use plexus_runtime::topology::StoreBuilder;
use plexus_runtime::{Error, Result};

use crate::ktable::{Change, KTable, store_builder};
use crate::options::{Materialized, SerdeRef};
use crate::processors::add_fn;
use crate::{Inner, need_serde};

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn serde_err(what: &str) -> impl Fn(plexus_runtime::serde::SerdeError) -> Error + '_ {
    move |e| Error::Topology(format!("foreign-key join: {what}: {e}"))
}

fn ser<T>(serde: &SerdeRef<T>, v: &T, what: &str) -> Result<Bytes> {
    serde.serialize(v).map(Option::unwrap_or_default).map_err(serde_err(what))
}

/// A subscription: `[op u8 (1 add, 0 remove)][hash u64][left key bytes]`.
fn subscription(add: bool, hash: u64, key: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(9 + key.len());
    b.put_u8(u8::from(add));
    b.put_u64(hash);
    b.put_slice(key);
    b.freeze()
}

/// A response: `[hash u64][present u8][right value bytes]`.
fn response(hash: u64, value: Option<&[u8]>) -> Bytes {
    let mut b = BytesMut::with_capacity(9 + value.map_or(0, <[u8]>::len));
    b.put_u64(hash);
    b.put_u8(u8::from(value.is_some()));
    if let Some(v) = value {
        b.put_slice(v);
    }
    b.freeze()
}

/// The subscription store's key: the foreign key length-prefixed (so that
/// one foreign key's subscriptions are a prefix), then the left key.
fn subscription_key(fk: &[u8], key: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + fk.len() + key.len());
    b.put_u32(u32::try_from(fk.len()).unwrap_or(u32::MAX));
    b.put_slice(fk);
    b.put_slice(key);
    b.freeze()
}

fn corrupt(what: &str) -> Error {
    Error::Topology(format!("foreign-key join: an unreadable {what}"))
}

/// Sends a response with the right row's new value to each subscriber of `fk`.
fn respond(
    ctx: &mut ProcessorContext<'_, Bytes, Bytes>,
    subs: &KeyValueStoreRef<Bytes, Bytes>,
    fk: &[u8],
    value: Option<&[u8]>,
    timestamp: i64,
) -> Result<()> {
    let prefix = subscription_key(fk, &[]);
    let entries = ctx.key_value_store(subs)?.prefix(&prefix)?;
    for (k, hash) in entries {
        let left = k.slice(prefix.len()..);
        let hash = hash.as_ref().try_into().map(u64::from_be_bytes).map_err(|_| corrupt("subscription"))?;
        ctx.forward(Record::new(left, response(hash, value), timestamp))?;
    }
    Ok(())
}

impl<K: Clone + 'static, V: Clone + 'static> KTable<K, V> {
    #[allow(clippy::too_many_lines)]
    fn fk_join<KO, VO, VR>(
        &self,
        other: &KTable<KO, VO>,
        foreign_key: impl Fn(&V) -> KO + Send + Sync + 'static,
        joiner: impl Fn(&V, Option<&VO>) -> Option<VR> + Send + Sync + 'static,
        materialized: Materialized<K, VR>,
        op: &str,
    ) -> KTable<K, VR>
    where
        KO: Clone + 'static,
        VO: Clone + 'static,
        VR: Clone + 'static,
    {
        let left_store = self.materialize(Materialized::default(), op);
        let right_store = other.materialize(Materialized::default(), op);
        let mut inner: std::cell::RefMut<'_, Inner> = self.inner();
        let base = match &materialized.name {
            Some(n) => n.clone(),
            None => inner.name("KTABLE-FK-JOIN"),
        };
        let names: Vec<String> = [
            "KTABLE-FK-JOIN-SUBSCRIBE",
            "KTABLE-FK-JOIN-SUBSCRIPTIONS",
            "KTABLE-FK-JOIN-RIGHT",
            "KTABLE-FK-JOIN-RESPONSE",
        ]
        .iter()
        .map(|k| inner.name(k))
        .collect();
        let option = "Materialized::with on both tables";
        let ks = need_serde(&mut inner, None, self.key_serde.as_ref(), "left key", op, option);
        let vs = need_serde(&mut inner, None, self.value_serde.as_ref(), "left value", op, option);
        let kos = need_serde(&mut inner, None, other.key_serde.as_ref(), "right key", op, option);
        let vos = need_serde(&mut inner, None, other.value_serde.as_ref(), "right value", op, option);
        let vrs =
            need_serde(&mut inner, materialized.value_serde.clone(), None, "result value", op, "Materialized::with");
        let mut node = None;
        let (Some(ks), Some(vs), Some(kos), Some(vos), Some(vrs), Some(ls), Some(rs), Some(l), Some(r)) =
            (ks, vs, kos, vos, vrs, left_store, right_store, self.node, other.node)
        else {
            if inner.error.is_none() {
                inner.record_error(Error::Topology(format!("{op}: a table cannot be looked up (a suppressed table?)")));
            }
            drop(inner);
            return self.fk_result(None, &names[3]);
        };
        let registration = format!("{base}-subscription-registration");
        let responses = format!("{base}-subscription-response");
        let subs = KeyValueStoreRef::new(&format!("{base}-subscription-store"), BytesSerde, BytesSerde);
        let result = KeyValueStoreRef::new(&format!("{base}-result-store"), Arc::clone(&ks), Arc::clone(&vrs));

        // 1. Left changes → subscriptions, keyed by foreign key.
        let (fk1, ks1, vs1, kos1) = (Arc::new(foreign_key), Arc::clone(&ks), Arc::clone(&vs), Arc::clone(&kos));
        let subscribe = add_fn(&mut inner, &names[0], &[l], move |r: Record<K, Change<V>>, ctx| {
            let key = ser(&ks1, &r.key, "left key")?;
            let old_fk = r.value.old.as_ref().map(|v| ser(&kos1, &fk1(v), "foreign key")).transpose()?;
            let new = r
                .value
                .new
                .as_ref()
                .map(|v| Ok::<_, Error>((ser(&kos1, &fk1(v), "foreign key")?, ser(&vs1, v, "left value")?)))
                .transpose()?;
            if let Some(old) = old_fk.filter(|o| new.as_ref().is_none_or(|(n, _)| n != o)) {
                ctx.forward(Record::new(old, subscription(false, 0, &key), r.timestamp))?;
            }
            if let Some((fk, value)) = new {
                ctx.forward(Record::new(fk, subscription(true, fnv1a(&value), &key), r.timestamp))?;
            }
            Ok(())
        });
        let mut ok = subscribe.is_some();
        for topic in [&registration, &responses] {
            let r = inner.topology.add_internal_topic(topic, None);
            ok &= inner.ok(r).is_some();
        }
        let sink = inner.name("KSTREAM-SINK");
        if let Some(s) = subscribe {
            let r = inner.topology.add_sink(&sink, &registration, BytesSerde, BytesSerde, &[s]);
            ok &= inner.ok(r).is_some();
        }
        // 2. Subscriptions and right changes → responses, keyed by left key.
        let source = inner.name("KSTREAM-SOURCE");
        let r_sub = inner.topology.add_source(&source, &[&registration], BytesSerde, BytesSerde);
        let sub_source = inner.ok(r_sub);
        let (subs2, rs2, kos2, vos2) = (subs.clone(), rs.clone(), Arc::clone(&kos), Arc::clone(&vos));
        let subscriptions = sub_source.and_then(|src| {
            add_fn(&mut inner, &names[1], &[src], move |r: Record<Bytes, Bytes>, ctx| {
                let mut b: &[u8] = &r.value;
                if b.len() < 9 {
                    return Err(corrupt("subscription"));
                }
                let add = b.get_u8() == 1;
                let hash = b.get_u64();
                let key = Bytes::copy_from_slice(b);
                let store_key = subscription_key(&r.key, &key);
                if !add {
                    ctx.key_value_store(&subs2)?.delete(&store_key)?;
                    return ctx.forward(Record::new(key, response(0, None), r.timestamp));
                }
                ctx.key_value_store(&subs2)?.put(&store_key, &Bytes::copy_from_slice(&hash.to_be_bytes()))?;
                let fk = kos2.deserialize(Some(&r.key)).map_err(serde_err("foreign key"))?;
                let right = ctx.key_value_store(&rs2)?.get(&fk)?;
                let right = right.map(|v| ser(&vos2, &v, "right value")).transpose()?;
                ctx.forward(Record::new(key, response(hash, right.as_deref()), r.timestamp))
            })
        });
        let (subs3, kos3, vos3) = (subs.clone(), Arc::clone(&kos), Arc::clone(&vos));
        let right_changes = add_fn(&mut inner, &names[2], &[r], move |r: Record<KO, Change<VO>>, ctx| {
            let fk = ser(&kos3, &r.key, "right key")?;
            let value = r.value.new.as_ref().map(|v| ser(&vos3, v, "right value")).transpose()?;
            respond(ctx, &subs3, &fk, value.as_deref(), r.timestamp)
        });
        if let (Some(a), Some(b)) = (subscriptions, right_changes) {
            let sink = inner.name("KSTREAM-SINK");
            let r1 = inner.topology.add_sink(&sink, &responses, BytesSerde, BytesSerde, &[a, b]);
            ok &= inner.ok(r1).is_some();
            inner.store(StoreBuilder::key_value(subs.name()), &[&names[1], &names[2]]);
            inner.connect(&names[1], &[rs.name()]);
            let mut topics = inner.topology.upstream_source_topics(r);
            topics.push(registration.clone());
            let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
            inner.topology.add_copartition_group(&topics);
        } else {
            ok = false;
        }
        // 3. Responses → results, checked against the left row as it is now.
        let source = inner.name("KSTREAM-SOURCE");
        let r_resp = inner.topology.add_source(&source, &[&responses], BytesSerde, BytesSerde);
        let resp_source = inner.ok(r_resp);
        let (ls4, vs4, ks4, vos4, result4) =
            (ls.clone(), Arc::clone(&vs), Arc::clone(&ks), Arc::clone(&vos), result.clone());
        let joiner = Arc::new(joiner);
        if ok && let Some(src) = resp_source {
            node = add_fn(&mut inner, &names[3], &[src], move |r: Record<Bytes, Bytes>, ctx| {
                let mut b: &[u8] = &r.value;
                if b.len() < 9 {
                    return Err(corrupt("response"));
                }
                let hash = b.get_u64();
                let present = b.get_u8() == 1;
                let key = ks4.deserialize(Some(&r.key)).map_err(serde_err("left key"))?;
                let left = ctx.key_value_store(&ls4)?.get(&key)?;
                let joined = match &left {
                    None => None,
                    Some(v) if fnv1a(&ser(&vs4, v, "left value")?) != hash => return Ok(()), // stale
                    Some(v) => {
                        let right = if present {
                            Some(vos4.deserialize(Some(b)).map_err(serde_err("right value"))?)
                        } else {
                            None
                        };
                        joiner(v, right.as_ref())
                    }
                };
                let old = {
                    let mut st = ctx.key_value_store(&result4)?;
                    let old = st.get(&key)?;
                    match &joined {
                        Some(v) => st.put(&key, v)?,
                        None => {
                            st.delete(&key)?;
                        }
                    }
                    old
                };
                if joined.is_none() && old.is_none() {
                    return Ok(());
                }
                ctx.forward(Record::new(key, Change { new: joined, old }, r.timestamp))
            });
            if node.is_some() {
                inner.store(store_builder(result.name(), &materialized), &[&names[3]]);
                inner.connect(&names[3], &[ls.name()]);
                let mut topics = inner.topology.upstream_source_topics(l);
                topics.push(responses.clone());
                let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                inner.topology.add_copartition_group(&topics);
            }
        }
        drop(inner);
        let mut table = self.fk_result(node, &names[3]);
        table.key_serde = Some(ks);
        table.value_serde = Some(vrs);
        *table.store.borrow_mut() = Some(result);
        table
    }

    fn fk_result<VR>(
        &self,
        node: Option<plexus_runtime::topology::NodeHandle<K, Change<VR>>>,
        processor: &str,
    ) -> KTable<K, VR> {
        KTable::new(&self.builder, node, processor.to_owned(), None, None)
    }

    /// Joins each row with the row of `other` whose key `foreign_key`
    /// computes from the row's value (Kafka's foreign-key join); rows
    /// without a match are left out. The tables need not be co-partitioned.
    /// `materialized` names the result and must give its value serde.
    #[must_use]
    pub fn join_foreign_key<KO: Clone + 'static, VO: Clone + 'static, VR: Clone + 'static>(
        &self,
        other: &KTable<KO, VO>,
        foreign_key: impl Fn(&V) -> KO + Send + Sync + 'static,
        joiner: impl Fn(&V, &VO) -> VR + Send + Sync + 'static,
        materialized: Materialized<K, VR>,
    ) -> KTable<K, VR> {
        self.fk_join(other, foreign_key, move |v, o| o.map(|o| joiner(v, o)), materialized, "join_foreign_key()")
    }

    /// As [`Self::join_foreign_key`], keeping rows without a match (`None`).
    #[must_use]
    pub fn left_join_foreign_key<KO: Clone + 'static, VO: Clone + 'static, VR: Clone + 'static>(
        &self,
        other: &KTable<KO, VO>,
        foreign_key: impl Fn(&V) -> KO + Send + Sync + 'static,
        joiner: impl Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
        materialized: Materialized<K, VR>,
    ) -> KTable<K, VR> {
        self.fk_join(other, foreign_key, move |v, o| Some(joiner(v, o)), materialized, "left_join_foreign_key()")
    }
}
