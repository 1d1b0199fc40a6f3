//! The nodes of one task's processor graph: typed, built per task on the
//! thread that runs it.
//!
//! A node is a processor with its children. Children are shared handles
//! (`Rc<RefCell<…>>`) because a node may have several parents (a merge);
//! the graph is acyclic, so a node is never entered while it is already
//! being borrowed. The handles are typed by the records they accept: a
//! forward is a virtual call with the record moved, never a downcast.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;

use plexus_core::Timestamp;

use super::{Processor, ProcessorContext, Punctuator, Record, TaskContext};
use crate::error::Result;

/// What a parent sees of a child: something that takes its records.
pub(crate) trait Node<K, V> {
    fn process(&mut self, record: Record<K, V>, task: &mut TaskContext) -> Result<()>;
}

/// A node that can be initialised, punctuated and closed without knowing
/// its record types (the task keeps these in a list, by node index).
pub(crate) trait Lifecycle {
    fn init(&mut self, task: &mut TaskContext) -> Result<()>;
    fn punctuate(&mut self, punctuator: Punctuator, timestamp: Timestamp, task: &mut TaskContext) -> Result<()>;
    fn flush(&mut self, task: &mut TaskContext) -> Result<()>;
    fn close(&mut self) -> Result<()>;
}

/// A child as a parent holds it: a shared, typed handle on a node.
pub(crate) struct Child<K, V>(pub(crate) Rc<RefCell<dyn Node<K, V>>>);

impl<K, V> Clone for Child<K, V> {
    fn clone(&self) -> Self {
        Self(Rc::clone(&self.0))
    }
}

impl<K, V> Child<K, V> {
    pub(crate) fn process(&self, record: Record<K, V>, task: &mut TaskContext) -> Result<()> {
        self.0.borrow_mut().process(record, task)
    }
}

/// A user processor and its children.
pub(crate) struct ProcessorNode<P, KIn, VIn, KOut, VOut> {
    pub(crate) index: usize,
    pub(crate) processor: P,
    pub(crate) children: Vec<Child<KOut, VOut>>,
    pub(crate) _types: PhantomData<fn(KIn, VIn)>,
}

impl<P, KIn, VIn, KOut, VOut> Node<KIn, VIn> for ProcessorNode<P, KIn, VIn, KOut, VOut>
where
    P: Processor<KIn, VIn, KOut, VOut>,
{
    fn process(&mut self, record: Record<KIn, VIn>, task: &mut TaskContext) -> Result<()> {
        let mut ctx = ProcessorContext { task, children: &self.children, node: self.index };
        self.processor.process(record, &mut ctx)
    }
}

impl<P, KIn, VIn, KOut, VOut> Lifecycle for ProcessorNode<P, KIn, VIn, KOut, VOut>
where
    P: Processor<KIn, VIn, KOut, VOut>,
{
    fn init(&mut self, task: &mut TaskContext) -> Result<()> {
        let mut ctx = ProcessorContext { task, children: &self.children, node: self.index };
        self.processor.init(&mut ctx)
    }

    fn punctuate(&mut self, punctuator: Punctuator, timestamp: Timestamp, task: &mut TaskContext) -> Result<()> {
        let mut ctx = ProcessorContext { task, children: &self.children, node: self.index };
        self.processor.punctuate(punctuator, timestamp, &mut ctx)
    }

    fn flush(&mut self, task: &mut TaskContext) -> Result<()> {
        let mut ctx = ProcessorContext { task, children: &self.children, node: self.index };
        self.processor.flush(&mut ctx)
    }

    fn close(&mut self) -> Result<()> {
        self.processor.close()
    }
}
