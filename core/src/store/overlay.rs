//! What has been written and is not yet checkpointed into sled: the
//! readers' view of the journal's tail. Writes land here (in the order the
//! journal has them) the moment they are appended; the checkpointer freezes
//! the current generation, applies it to sled, and drops it once sled has
//! it. A read looks at the current generation, then the frozen one, then
//! sled — so a batch is visible whole from the moment it is written.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use super::write::Change;
use super::Tree;

/// A value as the overlay has it: `None` is a removal (it hides sled's).
pub(super) type Slot = Option<Arc<[u8]>>;

/// One generation: per tree, key → its latest value.
#[derive(Debug, Default)]
pub(super) struct Generation {
    trees: Vec<BTreeMap<Vec<u8>, Slot>>,
    /// Operations taken in (not entries: a key written twice counts twice).
    pub(super) ops: usize,
}

impl Generation {
    fn tree(&mut self, t: Tree) -> &mut BTreeMap<Vec<u8>, Slot> {
        if self.trees.is_empty() {
            self.trees = (0..Tree::ALL.len()).map(|_| BTreeMap::new()).collect();
        }
        &mut self.trees[t.index()]
    }

    fn get(&self, t: Tree, key: &[u8]) -> Option<&Slot> {
        self.trees.get(t.index())?.get(key)
    }

    /// Whether it holds nothing.
    pub(super) fn is_empty(&self) -> bool {
        self.trees.iter().all(BTreeMap::is_empty)
    }

    /// Its entries per tree, for the checkpointer.
    pub(super) fn trees(&self) -> impl Iterator<Item = (Tree, &BTreeMap<Vec<u8>, Slot>)> {
        self.trees
            .iter()
            .enumerate()
            .map(|(i, m)| (Tree::ALL[i], m))
    }
}

/// The two generations.
#[derive(Debug, Default)]
pub(super) struct Overlay {
    current: Generation,
    frozen: Arc<Generation>,
}

impl Overlay {
    /// Takes one batch's operations in.
    pub(super) fn apply(&mut self, ops: Vec<(Tree, Change)>) {
        self.current.ops += ops.len();
        for (t, op) in ops {
            let (k, slot) = match op {
                Change::Put(k, v) => (k, Some(Arc::<[u8]>::from(v))),
                Change::Delete(k) => (k, None),
            };
            self.current.tree(t).insert(k, slot);
        }
    }

    /// Operations taken into the current generation.
    pub(super) fn pending_ops(&self) -> usize {
        self.current.ops
    }

    /// What the overlay knows of `key`: `None` when sled has the answer.
    pub(super) fn get(&self, t: Tree, key: &[u8]) -> Option<Slot> {
        self.current
            .get(t, key)
            .or_else(|| self.frozen.get(t, key))
            .cloned()
    }

    /// The overlay's entries of `t` within the bounds, in key order, the
    /// current generation's over the frozen one's.
    pub(super) fn range(
        &self,
        t: Tree,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
    ) -> Vec<(Vec<u8>, Slot)> {
        let mut out: BTreeMap<Vec<u8>, Slot> = BTreeMap::new();
        for g in [&*self.frozen, &self.current] {
            if let Some(m) = g.trees.get(t.index()) {
                for (k, v) in m.range::<[u8], _>((lo, hi)) {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        out.into_iter().collect()
    }

    /// Freezes the current generation for the checkpointer (the previous
    /// frozen one must have been dropped) and returns it.
    pub(super) fn freeze(&mut self) -> Arc<Generation> {
        debug_assert!(self.frozen.is_empty(), "a frozen generation is pending");
        self.frozen = Arc::new(std::mem::take(&mut self.current));
        self.frozen.clone()
    }

    /// The frozen generation (a checkpoint that failed retries it).
    pub(super) fn frozen(&self) -> Arc<Generation> {
        self.frozen.clone()
    }

    /// sled has the frozen generation: reads go there for it now.
    pub(super) fn drop_frozen(&mut self) {
        self.frozen = Arc::new(Generation::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ins(k: &str, v: &str) -> (Tree, Change) {
        (Tree::Meta, Change::Put(k.into(), v.into()))
    }

    #[test]
    fn the_current_generation_hides_the_frozen_one_and_removals_hide_values() {
        let mut o = Overlay::default();
        o.apply(vec![ins("a", "1"), ins("b", "1"), ins("c", "1")]);
        o.freeze();
        o.apply(vec![
            ins("a", "2"),
            (Tree::Meta, Change::Delete(b"b".to_vec())),
        ]);
        assert_eq!(o.get(Tree::Meta, b"a"), Some(Some(Arc::from(&b"2"[..]))));
        assert_eq!(o.get(Tree::Meta, b"b"), Some(None));
        assert_eq!(o.get(Tree::Meta, b"c"), Some(Some(Arc::from(&b"1"[..]))));
        assert_eq!(o.get(Tree::Meta, b"d"), None);
        assert_eq!(o.get(Tree::Txn, b"a"), None);
        let keys: Vec<_> = o
            .range(Tree::Meta, Bound::Included(b"b"), Bound::Unbounded)
            .into_iter()
            .map(|(k, v)| (k, v.is_some()))
            .collect();
        assert_eq!(keys, vec![(b"b".to_vec(), false), (b"c".to_vec(), true)]);
        o.drop_frozen();
        assert_eq!(o.get(Tree::Meta, b"c"), None);
        assert_eq!(o.pending_ops(), 2);
    }
}
