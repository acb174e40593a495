//! The simulated DynamoDB lease table: conditional writes with the semantics the core relies on
//! (kcl-core's reference `write::apply`), consistent and eventually consistent reads, scans in
//! 1 MB pages that may be stale, and billing as DynamoDB bills: a write unit per KB of the larger
//! of the item before and after (refused conditional writes are billed too), a read unit per
//! 4 KB, halved for eventually consistent reads, counted per operation kind.

use std::collections::{BTreeMap, HashMap};

use kcl_core::item::item_size;
use kcl_core::rng::Rng;
use kcl_core::write::{apply, LeaseWrite, WriteAction, WriteKind};
use kcl_core::{Failure, Item};

/// How stale eventually consistent reads may be.
#[derive(Clone, Debug)]
pub struct Consistency {
    /// A write is visible to eventually consistent reads at most this long after it (ms).
    pub lag_ms: u64,
    /// Per mille of eventually consistent reads of a recently written item that see the version
    /// before the write.
    pub stale_per_mille: u64,
}

impl Default for Consistency {
    fn default() -> Self {
        Self {
            lag_ms: 1_000,
            stale_per_mille: 100,
        }
    }
}

/// Billing and outcomes of one kind of operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct OperationBill {
    /// Calls answered.
    pub calls: u64,
    /// Read capacity units.
    pub read_units: f64,
    /// Write capacity units.
    pub write_units: f64,
    /// Conditional writes refused.
    pub condition_failures: u64,
}

/// Bytes per scan page, as DynamoDB limits them.
pub const SCAN_PAGE_BYTES: usize = 1024 * 1024;

/// One key of the table: its item, if it exists, and the version before its last write (which an
/// eventually consistent read sees only while the write is recent).
#[derive(Clone, Debug)]
struct Row {
    item: Option<Item>,
    /// The item's billed size, kept: every call is billed by it.
    size: usize,
    /// The version before the last write, with the write's time and its size.
    previous: Option<(u64, Option<Item>, usize)>,
}

/// The table. Rows are found by key through a hash index and walked in key order by scans; a
/// search of an ordered map of 10,000 keys compared the wanted key with a score of others, each
/// in its own allocation, for every renewal.
#[derive(Clone, Debug, Default)]
pub struct Dynamo {
    rows: Vec<Row>,
    /// Row by key, for reads and writes. Only looked up, never iterated: its order cannot leak.
    index: HashMap<String, usize, crate::hash::FastHash>,
    /// Row by key in key order, for scans and checkers. A deleted item's key stays, without item.
    order: BTreeMap<String, usize>,
    /// Items that exist.
    live: usize,
    consistency: Consistency,
    bills: BTreeMap<Operation, OperationBill>,
}

/// What a bill is for; named only when reported, so billing a call allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Operation {
    Scan,
    GetItem,
    Write(WriteCall, WriteKind),
}

/// The DynamoDB call a write is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum WriteCall {
    Put,
    Update,
    Delete,
}

impl Operation {
    fn name(self) -> String {
        match self {
            Self::Scan => "scan".into(),
            Self::GetItem => "get_item".into(),
            Self::Write(call, kind) => {
                let call = match call {
                    WriteCall::Put => "put_item",
                    WriteCall::Update => "update_item",
                    WriteCall::Delete => "delete_item",
                };
                format!("{call}:{kind:?}").to_lowercase()
            }
        }
    }
}

fn units(bytes: usize, per: usize) -> f64 {
    bytes.div_ceil(per).max(1) as f64
}

impl Dynamo {
    /// An empty table.
    pub fn new(consistency: Consistency) -> Self {
        Self {
            consistency,
            ..Self::default()
        }
    }

    fn bill(&mut self, operation: Operation) -> &mut OperationBill {
        self.bills.entry(operation).or_default()
    }

    /// Billing by operation: `scan`, `get_item`, and `put_item:create`, `update_item:renew`, ...
    /// for every kind of write.
    pub fn bills(&self) -> BTreeMap<String, OperationBill> {
        self.bills.iter().map(|(o, b)| (o.name(), *b)).collect()
    }

    /// Units (read and write) billed so far for the processors' checkpoints: what the
    /// application spends, apart from what the library spends keeping leases.
    pub fn checkpoint_units(&self) -> f64 {
        self.bills
            .iter()
            .filter(|(o, _)| matches!(o, Operation::Write(_, WriteKind::Checkpoint)))
            .map(|(_, b)| b.read_units + b.write_units)
            .sum()
    }

    /// Read units billed so far.
    pub fn read_units(&self) -> f64 {
        self.bills.values().map(|b| b.read_units).sum()
    }

    /// Write units billed so far.
    pub fn write_units(&self) -> f64 {
        self.bills.values().map(|b| b.write_units).sum()
    }

    /// What an eventually consistent read sees of a row at `now`, and its size.
    fn version<'a>(&self, row: &'a Row, now: u64, rng: &mut Rng) -> (Option<&'a Item>, usize) {
        match &row.previous {
            Some((at, before, size)) if self.stale(*at, now, rng) => (before.as_ref(), *size),
            _ => (row.item.as_ref(), row.size),
        }
    }

    fn row(&self, key: &str) -> Option<&Row> {
        self.index.get(key).map(|&i| &self.rows[i])
    }

    /// Whether a read at `now` of an item written at `at` sees the version before the write.
    fn stale(&self, at: u64, now: u64, rng: &mut Rng) -> bool {
        now < at + self.consistency.lag_ms && rng.below(1000) < self.consistency.stale_per_mille
    }

    /// GetItem, consistent or not.
    pub fn get(&mut self, now: u64, key: &str, consistent: bool, rng: &mut Rng) -> Option<Item> {
        let (item, size) = match self.row(key) {
            None => (None, 0),
            Some(row) if consistent => (row.item.as_ref(), row.size),
            Some(row) => self.version(row, now, rng),
        };
        let item = item.cloned();
        let u = units(size, 4096);
        let b = self.bill(Operation::GetItem);
        b.calls += 1;
        b.read_units += if consistent { u } else { u / 2.0 };
        item
    }

    /// One Scan page after `start_after`, eventually consistent unless `consistent`: items,
    /// and the key to continue from when the page filled up.
    pub fn scan_page(
        &mut self,
        now: u64,
        start_after: Option<&str>,
        consistent: bool,
        rng: &mut Rng,
    ) -> (Vec<Item>, Option<String>) {
        let mut page = Vec::new();
        let mut bytes = 0;
        let mut last = None;
        let from = match start_after {
            Some(k) => std::ops::Bound::Excluded(k),
            None => std::ops::Bound::Unbounded,
        };
        let mut more = false;
        for (key, &i) in self
            .order
            .range::<str, _>((from, std::ops::Bound::Unbounded))
        {
            let row = &self.rows[i];
            if row.item.is_none() {
                continue;
            }
            if bytes >= SCAN_PAGE_BYTES {
                more = true;
                break;
            }
            let version = if consistent {
                (row.item.as_ref(), row.size)
            } else {
                self.version(row, now, rng)
            };
            if let (Some(item), size) = version {
                bytes += size;
                page.push(item.clone());
            }
            last = Some(key.clone());
        }
        let b = self.bill(Operation::Scan);
        b.calls += 1;
        b.read_units += if consistent {
            units(bytes, 4096)
        } else {
            units(bytes, 4096) / 2.0
        };
        (page, if more { last } else { None })
    }

    /// A conditional PutItem, UpdateItem or DeleteItem.
    pub fn write(&mut self, now: u64, w: &LeaseWrite) -> Result<Option<Item>, Failure> {
        let slot = self.index.get(w.key.as_str()).copied();
        let current = slot.and_then(|i| self.rows[i].item.as_ref());
        let before_size = slot.map_or(0, |i| self.rows[i].size);
        let result = apply(current, w);
        let after_size = match &result {
            Ok(Some(after)) => item_size(after),
            _ => 0,
        };
        // The larger of the item before and after; a refused write is billed for the item as
        // it stands (and a refused PutItem for the item it would have written, if larger).
        let size = before_size.max(after_size).max(match &w.action {
            WriteAction::Put(i) => item_size(i),
            _ => 0,
        });
        let kind = Operation::Write(
            match w.action {
                WriteAction::Put(_) => WriteCall::Put,
                WriteAction::Update(_) => WriteCall::Update,
                WriteAction::Delete => WriteCall::Delete,
            },
            w.kind,
        );
        let outcome = match result {
            Ok(after) => {
                let out = if w.return_item { after.clone() } else { None };
                let i = match slot {
                    Some(i) => i,
                    None => self.add_row(&w.key),
                };
                let row = &mut self.rows[i];
                let existed = row.item.is_some();
                let before = std::mem::replace(&mut row.item, after);
                let before_size = std::mem::replace(&mut row.size, after_size);
                let exists = row.item.is_some();
                // The version before goes when the next write replaces it: a read checks its age.
                row.previous = Some((now, before, before_size));
                self.live = self.live + usize::from(exists) - usize::from(existed);
                Ok(out)
            }
            Err(_) => Err(Failure::ConditionFailed),
        };
        let b = self.bill(kind);
        b.calls += 1;
        b.write_units += units(size, 1024);
        if outcome.is_err() {
            b.condition_failures += 1;
        }
        outcome
    }

    fn add_row(&mut self, key: &str) -> usize {
        let i = self.rows.len();
        self.rows.push(Row {
            item: None,
            size: 0,
            previous: None,
        });
        self.index.insert(key.to_owned(), i);
        self.order.insert(key.to_owned(), i);
        i
    }

    /// The current item, unbilled (for checkers).
    pub fn peek(&self, key: &str) -> Option<&Item> {
        self.row(key)?.item.as_ref()
    }

    /// Every item in key order, unbilled (for checkers).
    pub fn items(&self) -> impl Iterator<Item = (&String, &Item)> {
        self.order
            .iter()
            .filter_map(|(k, &i)| Some((k, self.rows[i].item.as_ref()?)))
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kcl_core::write::{Condition, Update};
    use kcl_core::AttributeValue;

    fn put(key: &str, pad: usize) -> LeaseWrite {
        let mut item = Item::new();
        item.insert("leaseKey".into(), AttributeValue::S(key.into()));
        item.insert("pad".into(), AttributeValue::S("x".repeat(pad).into()));
        LeaseWrite {
            key: key.into(),
            action: WriteAction::Put(item),
            condition: Condition::NotExists,
            return_item: false,
            kind: WriteKind::Create,
        }
    }

    #[test]
    fn conditional_writes_are_billed_even_when_refused() {
        let mut d = Dynamo::new(Consistency::default());
        assert_eq!(d.write(0, &put("a", 3000)), Ok(None));
        assert_eq!(d.write(1, &put("a", 10)), Err(Failure::ConditionFailed));
        let b = d.bills()["put_item:create"];
        assert_eq!(b.calls, 2);
        assert_eq!(b.condition_failures, 1);
        // 3 KB written, then a refused write of a 10-byte item over a 3 KB one: 3 + 3 units.
        assert_eq!(b.write_units, 6.0);
        let bump = LeaseWrite {
            key: "a".into(),
            action: WriteAction::Update(vec![Update::Increment("leaseCounter", 1)]),
            condition: Condition::Exists,
            return_item: true,
            kind: WriteKind::Renew,
        };
        assert!(matches!(d.write(2, &bump), Ok(Some(_))));
    }

    #[test]
    fn scans_page_at_one_megabyte_and_bill_half_units() {
        let mut d = Dynamo::new(Consistency::default());
        for i in 0..300 {
            assert!(d.write(0, &put(&format!("k{i:03}"), 10_000)).is_ok());
        }
        let mut rng = Rng::new(1);
        let mut pages = 0;
        let mut seen = 0;
        let mut after: Option<String> = None;
        loop {
            let (items, next) = d.scan_page(10_000, after.as_deref(), false, &mut rng);
            pages += 1;
            seen += items.len();
            match next {
                Some(k) => after = Some(k),
                None => break,
            }
        }
        assert_eq!(seen, 300);
        assert_eq!(pages, 3, "about 3 MB in 1 MB pages");
        let units = d.bills()["scan"].read_units;
        assert!((360.0..380.0).contains(&units), "{units}");
    }

    #[test]
    fn eventually_consistent_reads_may_see_the_previous_version_for_a_while() {
        let mut d = Dynamo::new(Consistency {
            lag_ms: 100,
            stale_per_mille: 1000,
        });
        let mut rng = Rng::new(1);
        assert!(d.write(0, &put("a", 1)).is_ok());
        assert_eq!(d.get(50, "a", false, &mut rng), None);
        assert!(d.get(50, "a", true, &mut rng).is_some());
        assert!(d.get(100, "a", false, &mut rng).is_some());
        assert!(d.get(5_000, "a", false, &mut rng).is_some());
    }
}
