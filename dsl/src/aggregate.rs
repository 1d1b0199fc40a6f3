//! The aggregation processors: per key, per time window, per sliding
//! window and per session. Each reads the key's current aggregate from its
//! store, combines the record into it, writes it back and forwards the
//! [`Change`] (new and old aggregate) — through the record cache, which
//! forwards the latest change per key once per commit (see [`crate::cache`]).
//!
//! Windows close when the task's stream time reaches their end plus the
//! grace period; a record for a closed window is dropped and counted in
//! the dropped-records metric, as in Kafka Streams.

use std::sync::Arc;

use plexus_runtime::processor::{ProcessorContext, Record};
use plexus_runtime::state::{KeyValueStoreRef, SessionStoreRef, WindowStoreRef};
use plexus_runtime::topology::NodeHandle;

use crate::Inner;
use crate::cache::{KeyBytes, add_aggregation};
use crate::ktable::Change;
use crate::windows::{SessionWindows, SlidingWindows, TimeWindows, Window, Windowed};

/// Folds a value into a key's aggregate (`None`: the key has none yet).
pub(crate) type Combine<K, V, VA> = Arc<dyn Fn(&K, V, Option<VA>) -> VA + Send + Sync>;

/// Merges two sessions' aggregates.
pub(crate) type Merger<K, VA> = Arc<dyn Fn(&K, VA, VA) -> VA + Send + Sync>;

/// `count()`: one more per record.
pub(crate) fn counting<K, V>() -> Combine<K, V, i64> {
    Arc::new(|_: &K, _: V, old: Option<i64>| old.unwrap_or(0) + 1)
}

/// `reduce()`: the first value, then `reducer(aggregate, value)`.
pub(crate) fn reducing<K, V: 'static>(reducer: impl Fn(V, V) -> V + Send + Sync + 'static) -> Combine<K, V, V> {
    Arc::new(move |_: &K, v: V, old: Option<V>| match old {
        Some(a) => reducer(a, v),
        None => v,
    })
}

/// `aggregate()`: `initializer()`, then `aggregator(key, value, aggregate)`.
pub(crate) fn aggregating<K, V, VA: 'static>(
    initializer: impl Fn() -> VA + Send + Sync + 'static,
    aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
) -> Combine<K, V, VA> {
    Arc::new(move |k: &K, v: V, old: Option<VA>| aggregator(k, v, old.unwrap_or_else(&initializer)))
}

pub(crate) fn kv_aggregate<K, V, VA>(
    inner: &mut Inner,
    name: &str,
    parent: NodeHandle<K, V>,
    store: KeyValueStoreRef<K, VA>,
    combine: Combine<K, V, VA>,
    cache: Option<KeyBytes<K>>,
) -> Option<NodeHandle<K, Change<VA>>>
where
    K: Clone + 'static,
    V: Clone + 'static,
    VA: Clone + 'static,
{
    add_aggregation(inner, name, parent, cache, move |r: Record<K, V>, ctx, changes| {
        let (new, old) = {
            let mut s = ctx.key_value_store(&store)?;
            let old = s.get(&r.key)?;
            let new = combine(&r.key, r.value, old.clone());
            s.put(&r.key, &new)?;
            (new, old)
        };
        let change = Change { new: Some(new), old };
        changes.push(Record { key: r.key, value: change, timestamp: r.timestamp, headers: r.headers });
        Ok(())
    })
}

pub(crate) fn time_window_aggregate<K, V, VA>(
    inner: &mut Inner,
    name: &str,
    parent: NodeHandle<K, V>,
    store: WindowStoreRef<K, VA>,
    windows: TimeWindows,
    combine: Combine<K, V, VA>,
    cache: Option<KeyBytes<Windowed<K>>>,
) -> Option<NodeHandle<Windowed<K>, Change<VA>>>
where
    K: Clone + 'static,
    V: Clone + 'static,
    VA: Clone + 'static,
{
    add_aggregation(inner, name, parent, cache, move |r: Record<K, V>, ctx, changes| {
        let close = ctx.stream_time().saturating_sub(windows.grace);
        let (open, closed): (Vec<Window>, Vec<Window>) =
            windows.windows_for(r.timestamp).into_iter().partition(|w| w.end > close);
        for window in closed {
            ctx.record_dropped();
            tracing::debug!(window.start, window.end, close, "dropping a record for a closed window");
        }
        // The value moves into the last window's aggregate (one window
        // when tumbling): no clone on the common path.
        let mut value = Some(r.value);
        for (i, window) in open.iter().enumerate() {
            let v = if i + 1 == open.len() { value.take() } else { value.clone() };
            let Some(v) = v else { break };
            let record = (&r.key, r.timestamp, &r.headers[..]);
            update_window(ctx, changes, &store, record, *window, |old| combine(&r.key, v, old))?;
        }
        Ok(())
    })
}

/// Replaces a window's aggregate with `f(old)` and pushes the change; a
/// window older than the store's retention is not stored, and counted as
/// dropped. `record` is the key, timestamp and headers the output carries.
fn update_window<K: Clone, VA: Clone>(
    ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>,
    changes: &mut Vec<Record<Windowed<K>, Change<VA>>>,
    store: &WindowStoreRef<K, VA>,
    (key, timestamp, headers): (&K, i64, &[plexus_runtime::processor::Header]),
    window: Window,
    f: impl FnOnce(Option<VA>) -> VA,
) -> plexus_runtime::Result<()> {
    let (new, old, written) = {
        let mut s = ctx.window_store(store)?;
        let old = s.fetch_window(key, window.start)?;
        let new = f(old.clone());
        let written = s.put(key, window.start, Some(&new))?;
        (new, old, written)
    };
    if !written {
        ctx.record_dropped();
        return Ok(());
    }
    let key = Windowed { key: key.clone(), window };
    let change = Change { new: Some(new), old };
    changes.push(Record { key, value: change, timestamp, headers: headers.to_vec() });
    Ok(())
}

/// Sliding windows, as Kafka Streams defines them: every record at `t`
/// has a window `[t - d, t]`, and a window `[t + 1, t + 1 + d]` exists
/// when a record falls in it (both ends inclusive). The key's records
/// within reach are kept in `records` (a window store with duplicates,
/// under their own timestamps) and each window containing a new record is
/// recomputed from them in timestamp order, so that out-of-order records
/// update every window they belong to and `aggregate` needs no merger.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sliding_aggregate<K, V, VA>(
    inner: &mut Inner,
    name: &str,
    parent: NodeHandle<K, V>,
    store: WindowStoreRef<K, VA>,
    records: WindowStoreRef<K, V>,
    windows: SlidingWindows,
    combine: Combine<K, V, VA>,
    cache: Option<KeyBytes<Windowed<K>>>,
) -> Option<NodeHandle<Windowed<K>, Change<VA>>>
where
    K: Clone + 'static,
    V: Clone + 'static,
    VA: Clone + 'static,
{
    let d = windows.difference;
    add_aggregation(inner, name, parent, cache, move |r: Record<K, V>, ctx, changes| {
        let close = ctx.stream_time().saturating_sub(windows.grace);
        let t = r.timestamp;
        // The latest window holding `t` ends at `t + d`; a window's end is
        // inclusive, so it is open while its end is at least the close time.
        if t + d < close {
            ctx.record_dropped();
            return Ok(());
        }
        ctx.window_store(&records)?.put(&r.key, t, Some(&r.value))?;
        let near: Vec<(i64, V)> = ctx.window_store(&records)?.fetch(&r.key, t - d - 1, t + d + 1)?;
        let mut affected: Vec<Window> = Vec::new();
        for &(rt, _) in &near {
            // Left windows of records in [t, t + d] hold `t`...
            if (t..=t + d).contains(&rt) {
                affected.push(Window { start: rt - d, end: rt });
            }
            // ...and so do right windows of records in [t - d - 1, t - 1].
            if (t - d - 1..t).contains(&rt) {
                affected.push(Window { start: rt + 1, end: rt + 1 + d });
            }
        }
        // The new record's own right window exists if a record falls in it.
        if near.iter().any(|&(rt, _)| rt > t && rt <= t + 1 + d) {
            affected.push(Window { start: t + 1, end: t + 1 + d });
        }
        affected.sort();
        affected.dedup();
        for window in affected.into_iter().filter(|w| w.end >= close) {
            let mut content: Vec<&(i64, V)> =
                near.iter().filter(|(rt, _)| (window.start..=window.end).contains(rt)).collect();
            content.sort_by_key(|(rt, _)| *rt);
            let mut acc = None;
            for (_, v) in content {
                acc = Some(combine(&r.key, v.clone(), acc));
            }
            let Some(new) = acc else { continue };
            let record = (&r.key, t.max(window.start), &r.headers[..]);
            update_window(ctx, changes, &store, record, window, |_| new)?;
        }
        Ok(())
    })
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn session_aggregate<K, V, VA>(
    inner: &mut Inner,
    name: &str,
    parent: NodeHandle<K, V>,
    store: SessionStoreRef<K, VA>,
    windows: SessionWindows,
    combine: Combine<K, V, VA>,
    merger: Merger<K, VA>,
    cache: Option<KeyBytes<Windowed<K>>>,
) -> Option<NodeHandle<Windowed<K>, Change<VA>>>
where
    K: Clone + 'static,
    V: Clone + 'static,
    VA: Clone + 'static,
{
    add_aggregation(inner, name, parent, cache, move |r: Record<K, V>, ctx, changes| {
        let close = ctx.stream_time().saturating_sub(windows.grace);
        let t = r.timestamp;
        let overlapping = ctx.session_store(&store)?.find_sessions(&r.key, t - windows.gap, t + windows.gap)?;
        let (mut start, mut end) = (t, t);
        let mut merged: Option<VA> = None;
        for (s, e, v) in &overlapping {
            start = start.min(*s);
            end = end.max(*e);
            merged = Some(match merged {
                None => v.clone(),
                Some(a) => merger(&r.key, a, v.clone()),
            });
        }
        if end < close {
            ctx.record_dropped();
            return Ok(());
        }
        let new = combine(&r.key, r.value, merged);
        let window = Window { start, end };
        let mut same = None;
        for (s, e, v) in overlapping {
            if (s, e) == (start, end) {
                same = Some(v);
                continue;
            }
            ctx.session_store(&store)?.put(&r.key, s, e, None)?;
            let key = Windowed { key: r.key.clone(), window: Window { start: s, end: e } };
            let change = Change { new: None, old: Some(v) };
            changes.push(Record { key, value: change, timestamp: t, headers: r.headers.clone() });
        }
        ctx.session_store(&store)?.put(&r.key, start, end, Some(&new))?;
        let key = Windowed { key: r.key, window };
        changes.push(Record { key, value: Change { new: Some(new), old: same }, timestamp: t, headers: r.headers });
        Ok(())
    })
}
