//! The in-memory lease table: conditional writes by [`crate::write::apply`], with billing.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use crate::io::Failure;
use crate::item::{item_size, Item};
use crate::write::{apply, LeaseWrite, WriteAction};

/// Read and write units consumed, as DynamoDB bills them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableCounts {
    /// Write units (1 per KB written, rounded up per item; a failed conditional write costs too).
    pub write_units: u64,
    /// Read units in halves (eventually consistent reads cost half a unit per 4 KB).
    pub read_half_units: u64,
    /// Scans served.
    pub scans: u64,
    /// Writes applied.
    pub writes_applied: u64,
    /// Writes refused by their condition.
    pub writes_refused: u64,
}

/// A lease table in memory.
#[derive(Clone, Debug, Default)]
pub struct MemTable {
    items: BTreeMap<String, Item>,
    /// Billing so far.
    pub counts: TableCounts,
}

fn units(bytes: usize, per: usize) -> u64 {
    bytes.div_ceil(per).max(1) as u64
}

impl MemTable {
    /// Every item, in key order (one scan; billed eventually consistent).
    pub fn scan(&mut self) -> Vec<Item> {
        self.counts.scans += 1;
        let bytes: usize = self.items.values().map(item_size).sum();
        self.counts.read_half_units += units(bytes, 4096);
        self.items.values().cloned().collect()
    }

    /// A consistent read of one item.
    pub fn read(&mut self, key: &str) -> Option<Item> {
        let item = self.items.get(key).cloned();
        self.counts.read_half_units += 2 * units(item.as_ref().map_or(0, item_size), 4096);
        item
    }

    /// Applies a conditional write; the item after it when asked for.
    pub fn write(&mut self, w: &LeaseWrite) -> Result<Option<Item>, Failure> {
        let before = self.items.get(&w.key);
        let size = match &w.action {
            WriteAction::Put(i) => item_size(i),
            _ => before.map_or(0, item_size),
        };
        self.counts.write_units += units(size, 1024);
        match apply(before, w) {
            Ok(after) => {
                self.counts.writes_applied += 1;
                let out = if w.return_item { after.clone() } else { None };
                match after {
                    Some(item) => {
                        self.items.insert(w.key.clone(), item);
                    }
                    None => {
                        self.items.remove(&w.key);
                    }
                }
                Ok(out)
            }
            Err(_) => {
                self.counts.writes_refused += 1;
                Err(Failure::ConditionFailed)
            }
        }
    }

    /// Looks at an item without billing (for checkers).
    pub fn peek(&self, key: &str) -> Option<&Item> {
        self.items.get(key)
    }

    /// Puts an item unconditionally without billing (to seed tests, or to corrupt a row).
    pub fn insert(&mut self, item_key: &str, item: Item) {
        self.items.insert(item_key.into(), item);
    }

    /// All items (for checkers).
    pub fn items(&self) -> impl Iterator<Item = (&String, &Item)> {
        self.items.iter()
    }
}
