//! Joins: stream–table (each stream record looks up the table's current
//! value), stream–stream within [`JoinWindows`], and table–table (each side's
//! update looks up the other side's row).
//!
//! A join's inputs must be co-partitioned — the same key in the same
//! partition number on both sides — so a stream whose key changed is
//! repartitioned first and the inputs' topics are checked when the
//! application starts. The joined sides share their stores, which puts
//! them in one task per partition.
//!
//! Stream–stream left and outer joins emit a record that found no partner
//! only once no partner can come any more (its window closed, grace
//! included), as Kafka Streams does since 3.1, rather than at once and
//! again when the partner arrives.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use plexus_runtime::processor::{ProcessorContext, Record};
use plexus_runtime::serde::{BytesSerde, Serde};
use plexus_runtime::state::{KeyValueStoreRef, WindowStoreRef};
use plexus_runtime::topology::{NodeHandle, StoreBuilder};
use plexus_runtime::{Error, Result};

use crate::kstream::KStream;
use crate::ktable::{Change, KTable, Mirror, write_mirror};
use crate::options::{Joined, Materialized, SerdeRef, StreamJoined};
use crate::processors::add_fn;
use crate::windows::millis;
use crate::{Inner, need_serde};

/// How far apart in time two records of a stream–stream join may be
/// (Kafka's `JoinWindows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinWindows {
    before: i64,
    after: i64,
    grace: i64,
}

impl JoinWindows {
    /// Records at most `difference` apart join; late records are dropped.
    pub fn of_time_difference_with_no_grace(difference: Duration) -> Self {
        Self::of_time_difference_and_grace(difference, Duration::ZERO)
    }

    /// Records at most `difference` apart join, accepting records up to
    /// `grace` after the window's end.
    pub fn of_time_difference_and_grace(difference: Duration, grace: Duration) -> Self {
        Self { before: millis(difference), after: millis(difference), grace: millis(grace) }
    }

    /// How much earlier the other stream's record may be.
    #[must_use]
    pub fn before(mut self, d: Duration) -> Self {
        self.before = millis(d);
        self
    }

    /// How much later the other stream's record may be.
    #[must_use]
    pub fn after(mut self, d: Duration) -> Self {
        self.after = millis(d);
        self
    }
}

/// A joiner over possibly-missing sides; `None`: no output.
type Joiner<A, B, R> = Arc<dyn Fn(Option<&A>, Option<&B>) -> Option<R> + Send + Sync>;

fn co_partition<K, A, B>(inner: &mut Inner, a: NodeHandle<K, A>, b: NodeHandle<K, B>) {
    let mut topics = inner.topology.upstream_source_topics(a);
    topics.extend(inner.topology.upstream_source_topics(b));
    topics.sort();
    topics.dedup();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    inner.topology.add_copartition_group(&topics);
}

/// A node joining each record with a store's value for the key `key`
/// computes (stream–table and stream–global-table joins), connected to the store.
fn lookup_join<K, V, KT, VT, VR>(
    inner: &mut Inner,
    name: &str,
    parent: NodeHandle<K, V>,
    store: KeyValueStoreRef<KT, VT>,
    key: impl Fn(&K, &V) -> KT + Send + Sync + 'static,
    joiner: Joiner<V, VT, VR>,
) -> Option<NodeHandle<K, VR>>
where
    K: Clone + 'static,
    V: Clone + 'static,
    KT: 'static,
    VT: 'static,
    VR: Clone + 'static,
{
    let lookup = store.clone();
    let node = add_fn(inner, name, &[parent], move |r: Record<K, V>, ctx| {
        let other = ctx.key_value_store(&lookup)?.get(&key(&r.key, &r.value))?;
        match joiner(Some(&r.value), other.as_ref()) {
            Some(value) => ctx.forward(r.with_value(value)),
            None => Ok(()),
        }
    });
    if node.is_some() {
        inner.connect(name, &[store.name()]);
    }
    node
}

fn unmaterializable(operator: &str) -> Error {
    Error::Topology(format!(
        "{operator}: the table cannot be looked up (a suppressed table, say); join the table it comes from instead"
    ))
}

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, V> {
    fn table_join<VT, VR>(
        &self,
        table: &KTable<K, VT>,
        joined: Joined<K, V>,
        op: &str,
        joiner: Joiner<V, VT, VR>,
    ) -> KStream<K, VR>
    where
        VT: Clone + 'static,
        VR: Clone + 'static,
    {
        let base = joined.name.clone().unwrap_or_else(|| self.builder.inner.borrow_mut().name("KSTREAM-JOIN"));
        let stream = self.prepared_for_state(&base, joined.key_serde, joined.value_serde, op, "Joined::with");
        let store = table.materialize(Materialized::default(), op);
        let mut inner = self.builder.inner.borrow_mut();
        let name = inner.name(if op.starts_with("left") { "KSTREAM-LEFTJOIN" } else { "KSTREAM-JOIN" });
        let mut node = None;
        match (store, stream.node, table.node) {
            (None, _, _) => inner.record_error(unmaterializable(op)),
            (Some(store), Some(s), Some(t)) => {
                node = lookup_join(&mut inner, &name, s, store.clone(), |k: &K, _: &V| k.clone(), joiner);
                if node.is_some() {
                    co_partition(&mut inner, s, t);
                }
            }
            _ => {}
        }
        KStream {
            builder: self.builder.clone(),
            node,
            key_serde: stream.key_serde,
            value_serde: None,
            repartition_required: false,
        }
    }

    /// Joins each record with the table's current value for its key; a
    /// record whose key has no row is dropped (Kafka's `join(KTable)`).
    ///
    /// ```
    /// # use plexus_dsl::{Consumed, Materialized, StreamsBuilder};
    /// # use plexus_runtime::serde::{F64Serde, StringSerde};
    /// let builder = StreamsBuilder::new();
    /// let customers = builder.table("customers", Consumed::with(StringSerde, StringSerde), Materialized::named("customers"));
    /// let orders = builder.stream("orders", Consumed::with(StringSerde, F64Serde));
    /// let enriched = orders.join(&customers, |amount, name| format!("{name} ordered {amount:.2}"));
    /// ```
    #[must_use]
    pub fn join<VT: Clone + 'static, VR: Clone + 'static>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, &VT) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        self.join_with(table, joiner, Joined::default())
    }

    /// As [`Self::join`], with serdes (for a repartition) and a name.
    #[must_use]
    pub fn join_with<VT: Clone + 'static, VR: Clone + 'static>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, &VT) -> VR + Send + Sync + 'static,
        joined: Joined<K, V>,
    ) -> KStream<K, VR> {
        self.table_join(table, joined, "join()", Arc::new(move |v, t| Some(joiner(v?, t?))))
    }

    /// Joins each record with the table's current value for its key, or
    /// `None` when the key has no row (Kafka's `leftJoin(KTable)`).
    #[must_use]
    pub fn left_join<VT: Clone + 'static, VR: Clone + 'static>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, Option<&VT>) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        self.left_join_with(table, joiner, Joined::default())
    }

    /// As [`Self::left_join`], with serdes (for a repartition) and a name.
    #[must_use]
    pub fn left_join_with<VT: Clone + 'static, VR: Clone + 'static>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, Option<&VT>) -> VR + Send + Sync + 'static,
        joined: Joined<K, V>,
    ) -> KStream<K, VR> {
        self.table_join(table, joined, "left_join()", Arc::new(move |v, t| Some(joiner(v?, t))))
    }

    #[allow(clippy::too_many_lines)]
    fn stream_join<VO, VR>(
        &self,
        other: &KStream<K, VO>,
        windows: JoinWindows,
        joined: StreamJoined<K, V, VO>,
        (this_outer, other_outer): (bool, bool),
        op: &str,
        joiner: Joiner<V, VO, VR>,
    ) -> KStream<K, VR>
    where
        VO: Clone + 'static,
        VR: Clone + 'static,
    {
        let option = "StreamJoined::with";
        let (this_name, other_name, merge, base) = {
            let mut inner = self.builder.inner.borrow_mut();
            let this = inner.name("KSTREAM-JOINTHIS");
            let other = inner.name("KSTREAM-JOINOTHER");
            let merge = inner.name("KSTREAM-MERGE");
            let base = joined.store_name.clone().unwrap_or_else(|| this.clone());
            (this, other, merge, base)
        };
        let left = self.prepared_for_state(
            &format!("{base}-left"),
            joined.key_serde.clone(),
            joined.value_serde.clone(),
            op,
            option,
        );
        let right = other.prepared_for_state(
            &format!("{base}-right"),
            joined.key_serde.clone(),
            joined.other_value_serde.clone(),
            op,
            option,
        );
        let mut inner = self.builder.inner.borrow_mut();
        let ks = need_serde(&mut inner, joined.key_serde, left.key_serde.as_ref(), "key", op, option);
        let vs = need_serde(&mut inner, joined.value_serde, left.value_serde.as_ref(), "value", op, option);
        let vos =
            need_serde(&mut inner, joined.other_value_serde, right.value_serde.as_ref(), "other value", op, option);
        let (Some(ks), Some(vs), Some(vos), Some(l), Some(r)) = (ks, vs, vos, left.node, right.node) else {
            return KStream {
                builder: self.builder.clone(),
                node: None,
                key_serde: None,
                value_serde: None,
                repartition_required: false,
            };
        };
        let this_store = WindowStoreRef::new(&format!("{base}-this-join-store"), Arc::clone(&ks), Arc::clone(&vs));
        let other_store = WindowStoreRef::new(&format!("{base}-other-join-store"), Arc::clone(&ks), Arc::clone(&vos));
        let outer = (this_outer || other_outer)
            .then(|| KeyValueStoreRef::new(&format!("{base}-outer-join-store"), BytesSerde, BytesSerde));
        let shared = Arc::new(JoinShared {
            windows,
            key_serde: ks.clone(),
            this_serde: vs,
            other_serde: vos,
            outer: outer.clone(),
            this_outer,
            other_outer,
            joiner,
        });
        let (s1, s2) = (Arc::clone(&shared), Arc::clone(&shared));
        let (a_this, a_other) = (this_store.clone(), other_store.clone());
        let this_node = add_fn(&mut inner, &this_name, &[l], move |rec: Record<K, V>, ctx| {
            let join = |a: &V, b: &VO| (s1.joiner)(Some(a), Some(b));
            s1.process(Side::This, rec, &a_this, &a_other, &s1.this_serde, join, ctx)
        });
        let (b_this, b_other) = (this_store.clone(), other_store.clone());
        let other_node = add_fn(&mut inner, &other_name, &[r], move |rec: Record<K, VO>, ctx| {
            let join = |a: &VO, b: &V| (s2.joiner)(Some(b), Some(a));
            s2.process(Side::Other, rec, &b_other, &b_this, &s2.other_serde, join, ctx)
        });
        let mut node = None;
        if let (Some(a), Some(b)) = (this_node, other_node) {
            let retention = windows.before + windows.after + windows.grace;
            let retention = Duration::from_millis(u64::try_from(retention.max(1)).unwrap_or(u64::MAX));
            let both = [this_name.as_str(), other_name.as_str()];
            for name in [this_store.name(), other_store.name()] {
                let mut b = StoreBuilder::window(name, retention, true);
                if joined.in_memory {
                    b = b.in_memory();
                }
                inner.store(b, &both);
            }
            if let Some(outer) = &outer {
                inner.store(StoreBuilder::key_value(outer.name()), &both);
            }
            co_partition(&mut inner, l, r);
            node = add_fn(&mut inner, &merge, &[a, b], |rec, ctx| ctx.forward(rec));
        }
        KStream {
            builder: self.builder.clone(),
            node,
            key_serde: Some(ks),
            value_serde: None,
            repartition_required: false,
        }
    }

    /// Joins records of two streams with the same key at most the window's
    /// span apart in time (Kafka's `join(KStream, ..., JoinWindows)`).
    #[must_use]
    pub fn join_stream<VO: Clone + 'static, VR: Clone + 'static>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(&V, &VO) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        joined: StreamJoined<K, V, VO>,
    ) -> KStream<K, VR> {
        self.stream_join(
            other,
            windows,
            joined,
            (false, false),
            "join_stream()",
            Arc::new(move |a, b| Some(joiner(a?, b?))),
        )
    }

    /// As [`Self::join_stream`], and a record of this stream that finds no
    /// partner is joined with `None` once its window closes.
    #[must_use]
    pub fn left_join_stream<VO: Clone + 'static, VR: Clone + 'static>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        joined: StreamJoined<K, V, VO>,
    ) -> KStream<K, VR> {
        self.stream_join(
            other,
            windows,
            joined,
            (true, false),
            "left_join_stream()",
            Arc::new(move |a, b| Some(joiner(a?, b))),
        )
    }

    /// As [`Self::join_stream`], and a record of either stream that finds
    /// no partner is joined with `None` once its window closes.
    #[must_use]
    pub fn outer_join_stream<VO: Clone + 'static, VR: Clone + 'static>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        joined: StreamJoined<K, V, VO>,
    ) -> KStream<K, VR> {
        self.stream_join(
            other,
            windows,
            joined,
            (true, true),
            "outer_join_stream()",
            Arc::new(move |a, b| Some(joiner(a, b))),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    This,
    Other,
}

/// What both processors of a stream–stream join share.
struct JoinShared<K, V, VO, VR> {
    windows: JoinWindows,
    key_serde: SerdeRef<K>,
    this_serde: SerdeRef<V>,
    other_serde: SerdeRef<VO>,
    /// Records still without a partner, for left/outer joins: keyed by
    /// timestamp, side and key; the value holds every such record's value.
    outer: Option<KeyValueStoreRef<Bytes, Bytes>>,
    this_outer: bool,
    other_outer: bool,
    joiner: Joiner<V, VO, VR>,
}

fn outer_key(ts: i64, side: Side, key: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(9 + key.len());
    b.put_i64(ts ^ i64::MIN);
    b.put_u8(match side {
        Side::This => 0,
        Side::Other => 1,
    });
    b.put_slice(key);
    b.freeze()
}

fn push_value(list: Option<Bytes>, value: &[u8]) -> Bytes {
    let mut b = BytesMut::from(list.as_deref().unwrap_or_default());
    b.put_u32(u32::try_from(value.len()).unwrap_or(u32::MAX));
    b.put_slice(value);
    b.freeze()
}

fn values(mut list: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while list.remaining() >= 4 {
        let n = usize::try_from(list.get_u32()).unwrap_or(usize::MAX).min(list.len());
        out.push(&list[..n]);
        list = &list[n..];
    }
    out
}

impl<K: Clone + 'static, V: Clone + 'static, VO: Clone + 'static, VR: Clone + 'static> JoinShared<K, V, VO, VR> {
    /// Handles a record of one side (`A`), looking up the other (`B`);
    /// `join` calls the joiner with the sides in their places.
    #[allow(clippy::too_many_arguments)]
    fn process<A: Clone, B: Clone>(
        &self,
        side: Side,
        r: Record<K, A>,
        mine: &WindowStoreRef<K, A>,
        theirs: &WindowStoreRef<K, B>,
        mine_serde: &SerdeRef<A>,
        join: impl Fn(&A, &B) -> Option<VR>,
        ctx: &mut ProcessorContext<'_, K, VR>,
    ) -> Result<()> {
        let w = self.windows;
        // This side's record at t meets the other's in [t - before, t + after].
        let (before, after) = if side == Side::This { (w.before, w.after) } else { (w.after, w.before) };
        let t = r.timestamp;
        let now = ctx.stream_time();
        if t.saturating_add(after).saturating_add(w.grace) < now {
            ctx.record_dropped();
            return Ok(());
        }
        ctx.window_store(mine)?.put(&r.key, t, Some(&r.value))?;
        let partners = ctx.window_store(theirs)?.fetch(&r.key, t.saturating_sub(before), t.saturating_add(after))?;
        let ser_key = || {
            self.key_serde
                .serialize(&r.key)
                .map_err(|e| Error::Topology(format!("join: key: {e}")))
                .map(Option::unwrap_or_default)
        };
        if let Some(outer) = &self.outer {
            let key = ser_key()?;
            let other_side = if side == Side::This { Side::Other } else { Side::This };
            let mut store = ctx.key_value_store(outer)?;
            for (pt, _) in &partners {
                store.delete(&outer_key(*pt, other_side, &key))?;
            }
            let outer_side = if side == Side::This { self.this_outer } else { self.other_outer };
            if partners.is_empty() && outer_side {
                let value = mine_serde
                    .serialize(&r.value)
                    .map_err(|e| Error::Topology(format!("join: value: {e}")))?
                    .unwrap_or_default();
                let k = outer_key(t, side, &key);
                let list = store.get(&k)?;
                store.put(&k, &push_value(list, &value))?;
            }
        }
        for (pt, p) in partners {
            if let Some(v) = join(&r.value, &p) {
                ctx.forward(Record { key: r.key.clone(), value: v, timestamp: t.max(pt), headers: r.headers.clone() })?;
            }
        }
        self.emit_expired(now, ctx)
    }

    /// Emits the unmatched records no partner can reach any more.
    fn emit_expired(&self, now: i64, ctx: &mut ProcessorContext<'_, K, VR>) -> Result<()> {
        let Some(outer) = &self.outer else { return Ok(()) };
        let w = self.windows;
        // A partner of a record at t has a timestamp up to t + after (or
        // before) and is itself accepted until its own window closes.
        let horizon = now.saturating_sub(w.before + w.after + w.grace);
        // Everything below the low-water mark was emitted already: scanning
        // from it skips the deletions, which stay in the record cache as
        // tombstones until the commit. No record accepted later can be
        // older than the horizon, so the mark only rises.
        let low = match ctx.key_value_store(outer)?.get(&LOW_WATER)? {
            Some(b) => b.as_ref().try_into().map(i64::from_be_bytes).map_err(|_| corrupt_outer())?,
            None => i64::MIN,
        };
        if horizon <= low {
            return Ok(());
        }
        let expired = ctx
            .key_value_store(outer)?
            .range(&outer_key(low, Side::This, &[]), &outer_key(horizon, Side::This, &[]))?;
        ctx.key_value_store(outer)?.put(&LOW_WATER, &Bytes::copy_from_slice(&horizon.to_be_bytes()))?;
        for (k, list) in expired {
            let head: [u8; 8] = k.get(..8).and_then(|h| h.try_into().ok()).ok_or_else(corrupt_outer)?;
            let ts = i64::from_be_bytes(head) ^ i64::MIN;
            if ts >= horizon || k.len() < 9 {
                continue;
            }
            ctx.key_value_store(outer)?.delete(&k)?;
            let key =
                self.key_serde.deserialize(Some(&k[9..])).map_err(|e| Error::Topology(format!("join: key: {e}")))?;
            for v in values(&list) {
                let joined = if k[8] == 0 {
                    let v = self
                        .this_serde
                        .deserialize(Some(v))
                        .map_err(|e| Error::Topology(format!("join: value: {e}")))?;
                    (self.joiner)(Some(&v), None)
                } else {
                    let v = self
                        .other_serde
                        .deserialize(Some(v))
                        .map_err(|e| Error::Topology(format!("join: value: {e}")))?;
                    (self.joiner)(None, Some(&v))
                };
                if let Some(value) = joined {
                    ctx.forward(Record::new(key.clone(), value, ts))?;
                }
            }
        }
        Ok(())
    }
}

/// The outer-join store's key for its low-water mark: empty, so it sorts
/// before every record's key.
const LOW_WATER: Bytes = Bytes::new();

fn corrupt_outer() -> Error {
    Error::Topology("stream-stream join: the outer-join store holds an entry it cannot read".into())
}

impl<K: Clone + 'static, V: Clone + 'static> KTable<K, V> {
    fn table_join<VO, VR>(&self, other: &KTable<K, VO>, op: &str, joiner: Joiner<V, VO, VR>) -> KTable<K, VR>
    where
        VO: Clone + 'static,
        VR: Clone + 'static,
    {
        let this_store = self.materialize(Materialized::default(), op);
        let other_store = other.materialize(Materialized::default(), op);
        let mut inner = self.builder.inner.borrow_mut();
        let this_name = inner.name("KTABLE-JOINTHIS");
        let other_name = inner.name("KTABLE-JOINOTHER");
        let merge = inner.name("KTABLE-MERGE");
        let mirror: Mirror<K, VR> = Arc::new(std::sync::OnceLock::new());
        let mut node = None;
        match (this_store, other_store, self.node, other.node) {
            (Some(ts), Some(os), Some(a), Some(b)) => {
                let (j1, j2) = (Arc::clone(&joiner), Arc::clone(&joiner));
                let lookup = os.clone();
                let left = add_fn(&mut inner, &this_name, &[a], move |r: Record<K, Change<V>>, ctx| {
                    let o = ctx.key_value_store(&lookup)?.get(&r.key)?;
                    let change =
                        Change { new: j1(r.value.new.as_ref(), o.as_ref()), old: j1(r.value.old.as_ref(), o.as_ref()) };
                    forward_change(r.key, change, r.timestamp, ctx)
                });
                let lookup = ts.clone();
                let right = add_fn(&mut inner, &other_name, &[b], move |r: Record<K, Change<VO>>, ctx| {
                    let t = ctx.key_value_store(&lookup)?.get(&r.key)?;
                    let change =
                        Change { new: j2(t.as_ref(), r.value.new.as_ref()), old: j2(t.as_ref(), r.value.old.as_ref()) };
                    forward_change(r.key, change, r.timestamp, ctx)
                });
                if let (Some(l), Some(r)) = (left, right) {
                    inner.connect(&this_name, &[os.name()]);
                    inner.connect(&other_name, &[ts.name()]);
                    co_partition(&mut inner, a, b);
                    let m = Arc::clone(&mirror);
                    node = add_fn(&mut inner, &merge, &[l, r], move |r: Record<K, Change<VR>>, ctx| {
                        write_mirror(&m, ctx, &r.key, &r.value)?;
                        ctx.forward(r)
                    });
                }
            }
            (None, _, _, _) | (_, None, _, _) => inner.record_error(unmaterializable(op)),
            _ => {}
        }
        drop(inner);
        KTable { mirror: Some(mirror), ..KTable::new(&self.builder, node, merge, self.key_serde.clone(), None) }
    }

    /// A table of the rows whose key is in both tables, as `joiner` combines them.
    #[must_use]
    pub fn join<VO: Clone + 'static, VR: Clone + 'static>(
        &self,
        other: &KTable<K, VO>,
        joiner: impl Fn(&V, &VO) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        self.table_join(other, "join()", Arc::new(move |a, b| Some(joiner(a?, b?))))
    }

    /// A table of this table's rows, each joined with the other's row for
    /// its key if there is one.
    #[must_use]
    pub fn left_join<VO: Clone + 'static, VR: Clone + 'static>(
        &self,
        other: &KTable<K, VO>,
        joiner: impl Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        self.table_join(other, "left_join()", Arc::new(move |a, b| Some(joiner(a?, b))))
    }

    /// A table of the rows whose key is in either table.
    #[must_use]
    pub fn outer_join<VO: Clone + 'static, VR: Clone + 'static>(
        &self,
        other: &KTable<K, VO>,
        joiner: impl Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        self.table_join(
            other,
            "outer_join()",
            Arc::new(move |a, b| if a.is_none() && b.is_none() { None } else { Some(joiner(a, b)) }),
        )
    }
}

fn forward_change<K: Clone, VR: Clone>(
    key: K,
    change: Change<VR>,
    timestamp: i64,
    ctx: &mut ProcessorContext<'_, K, Change<VR>>,
) -> Result<()> {
    if change.new.is_none() && change.old.is_none() {
        return Ok(());
    }
    ctx.forward(Record::new(key, change, timestamp))
}

/// A table of a whole topic, kept on every instance (Kafka's
/// `GlobalKTable`): a stream joins it on any key it computes, with no
/// repartitioning and no co-partitioning.
pub struct GlobalKTable<KG, VG> {
    pub(crate) store: KeyValueStoreRef<KG, VG>,
}

impl<KG, VG> GlobalKTable<KG, VG> {
    /// The name of its store (queryable in the test driver).
    pub fn queryable_store_name(&self) -> &str {
        self.store.name()
    }
}

pub(crate) fn global_table<KG: 'static, VG: 'static>(
    builder: &crate::StreamsBuilder,
    topic: &str,
    consumed: crate::Consumed<KG, VG>,
    materialized: Materialized<KG, VG>,
) -> GlobalKTable<KG, VG> {
    let mut inner = builder.inner.borrow_mut();
    let name = match &materialized.name {
        Some(n) => n.clone(),
        None => format!("{topic}-STATE-STORE-{}", inner.name("GLOBALKTABLE")),
    };
    // The store holds the topic's bytes: it reads with the topic's serdes.
    let store = KeyValueStoreRef::new(&name, Arc::clone(&consumed.key_serde), Arc::clone(&consumed.value_serde));
    let mut spec = StoreBuilder::key_value(&name);
    if materialized.in_memory {
        spec = spec.in_memory();
    }
    let r = inner.topology.add_global_store(spec, topic);
    inner.ok(r);
    GlobalKTable { store }
}

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, V> {
    fn global_join<KG, VG, VR>(
        &self,
        table: &GlobalKTable<KG, VG>,
        key: impl Fn(&K, &V) -> KG + Send + Sync + 'static,
        kind: &str,
        joiner: Joiner<V, VG, VR>,
    ) -> KStream<K, VR>
    where
        KG: 'static,
        VG: 'static,
        VR: Clone + 'static,
    {
        let mut inner = self.builder.inner.borrow_mut();
        let name = inner.name(kind);
        let store = table.store.clone();
        let node = self.node.and_then(|parent| lookup_join(&mut inner, &name, parent, store, key, joiner));
        KStream {
            builder: self.builder.clone(),
            node,
            key_serde: self.key_serde.clone(),
            value_serde: None,
            repartition_required: self.repartition_required,
        }
    }

    /// Joins each record with the global table's row for the key `key`
    /// computes from it; records without a row are dropped.
    #[must_use]
    pub fn join_global<KG: 'static, VG: 'static, VR: Clone + 'static>(
        &self,
        table: &GlobalKTable<KG, VG>,
        key: impl Fn(&K, &V) -> KG + Send + Sync + 'static,
        joiner: impl Fn(&V, &VG) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        self.global_join(table, key, "KSTREAM-JOIN", Arc::new(move |v, g| Some(joiner(v?, g?))))
    }

    /// As [`Self::join_global`], with `None` for records without a row.
    #[must_use]
    pub fn left_join_global<KG: 'static, VG: 'static, VR: Clone + 'static>(
        &self,
        table: &GlobalKTable<KG, VG>,
        key: impl Fn(&K, &V) -> KG + Send + Sync + 'static,
        joiner: impl Fn(&V, Option<&VG>) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        self.global_join(table, key, "KSTREAM-LEFTJOIN", Arc::new(move |v, g| Some(joiner(v?, g))))
    }
}
