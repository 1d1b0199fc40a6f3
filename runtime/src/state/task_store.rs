//! A state store as one task holds it: the store engine, the task's
//! uncommitted writes over it, and the window or session layout on top.

use std::sync::Arc;

use super::{BytesStore, Duplicates, OverlayStore, SessionBytesStore, WindowBytesStore};
use crate::error::Result;
use crate::topology::{StoreBuilder, StoreKind};

/// The layout a store's bytes follow.
#[derive(Debug)]
pub(crate) enum Layout {
    KeyValue,
    Window(WindowBytesStore),
    Session(SessionBytesStore),
}

/// One store of one task.
#[derive(Debug)]
pub(crate) struct TaskStore {
    pub(crate) spec: StoreBuilder,
    /// The committed store (what interactive queries read).
    pub(crate) committed: Arc<dyn BytesStore>,
    /// The task's view: uncommitted writes over the committed store.
    pub(crate) overlay: Arc<OverlayStore>,
    pub(crate) layout: Layout,
    /// Node indexes of the processors allowed to use it.
    pub(crate) connected: Vec<usize>,
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl TaskStore {
    pub(crate) fn new(spec: StoreBuilder, committed: Arc<dyn BytesStore>, connected: Vec<usize>) -> Result<Self> {
        let overlay = Arc::new(OverlayStore::new(Arc::clone(&committed)));
        let view: Arc<dyn BytesStore> = overlay.clone();
        let layout = match spec.kind {
            StoreKind::KeyValue => Layout::KeyValue,
            StoreKind::Window { retention, retain_duplicates } => {
                let duplicates = if retain_duplicates { Duplicates::Retain } else { Duplicates::Overwrite };
                Layout::Window(WindowBytesStore::new(view, millis(retention), duplicates)?)
            }
            StoreKind::Session { retention } => Layout::Session(SessionBytesStore::new(view, millis(retention))?),
        };
        Ok(Self { spec, committed, overlay, layout, connected })
    }
}
