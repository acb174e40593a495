//! The checkpoint ledger: every checkpoint request a simulated processor makes, from the moment
//! it is made until its answer. It checks what the worker promises its processors: each request
//! is answered exactly once, within a bound, and an answer of success is true (the table's
//! checkpoint is at least where the processor asked it to be).

use std::collections::BTreeMap;

use kcl_core::io::CheckpointError;
use kcl_core::{LeaseKey, Position};

use crate::fleet::NodeId;

/// A request waiting for its answer.
#[derive(Clone, Debug)]
struct Open {
    asked_ms: u64,
    shard: LeaseKey,
    /// For a commit to a known position: the position.
    commit_to: Option<Position>,
}

/// Requests by worker incarnation and ticket, and what their answers were.
#[derive(Clone, Debug, Default)]
pub struct CheckpointLedger {
    open: BTreeMap<(NodeId, u64, u64), Open>,
    /// Requests made.
    pub asked: u64,
    /// Answers by outcome: `ok`, or the error's name.
    pub answers: BTreeMap<&'static str, u64>,
}

/// Why an answer is wrong.
pub type Wrong = String;

impl CheckpointLedger {
    /// Worker `node` (incarnation `inc`) was asked for `ticket` on `shard` at `now`; a commit to
    /// a known position names it.
    pub fn asked(
        &mut self,
        now: u64,
        (node, inc): (NodeId, u64),
        ticket: u64,
        shard: &LeaseKey,
        commit_to: Option<Position>,
    ) {
        self.asked += 1;
        self.open.insert(
            (node, inc, ticket),
            Open {
                asked_ms: now,
                shard: shard.clone(),
                commit_to,
            },
        );
    }

    /// The answer to `ticket`; `table_checkpoint` reads the shard's checkpoint in the table now
    /// (`None` when the row is gone). Returns what is wrong with the answer, if anything.
    pub fn answered(
        &mut self,
        (node, inc): (NodeId, u64),
        ticket: u64,
        result: &Result<(), CheckpointError>,
        table_checkpoint: impl FnOnce(&LeaseKey) -> Option<Position>,
    ) -> Option<Wrong> {
        *self.answers.entry(outcome_name(result)).or_insert(0) += 1;
        let Some(open) = self.open.remove(&(node, inc, ticket)) else {
            return Some(format!(
                "checkpoint ticket {ticket} of worker node {node} answered twice, or never asked"
            ));
        };
        if let (Ok(()), Some(to)) = (result, &open.commit_to) {
            match table_checkpoint(&open.shard) {
                Some(at) if at < *to => {
                    return Some(format!(
                        "checkpoint of {} answered done at {to:?}, but the table holds {at:?}",
                        open.shard
                    ))
                }
                _ => {}
            }
        }
        None
    }

    /// The asker stopped waiting for `ticket` before its answer came (its processor call was
    /// cancelled): the request is over, unanswered.
    pub fn withdrawn(&mut self, (node, inc): (NodeId, u64), ticket: u64) {
        if self.open.remove(&(node, inc, ticket)).is_some() {
            *self.answers.entry("withdrawn").or_insert(0) += 1;
        }
    }

    /// The incarnation ended (crashed, restarted, retired): its requests die with it.
    pub fn forget(&mut self, node: NodeId, inc: u64) {
        let dead: Vec<_> = self
            .open
            .range((node, inc, 0)..=(node, inc, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in dead {
            self.open.remove(&k);
        }
    }

    /// Requests of live incarnations asked before `before` and still unanswered: how many, and
    /// the first (oldest key order).
    pub fn overdue(&self, before: u64) -> Option<(usize, String)> {
        let mut late = self.open.iter().filter(|(_, o)| o.asked_ms < before);
        let ((node, _, ticket), first) = late.next()?;
        let what = format!(
            "ticket {ticket} of worker node {node} on {}, asked at {} ms",
            first.shard, first.asked_ms
        );
        Some((1 + late.count(), what))
    }
}

fn outcome_name(result: &Result<(), CheckpointError>) -> &'static str {
    match result {
        Ok(()) => "ok",
        Err(CheckpointError::LeaseLost) => "lease_lost",
        Err(CheckpointError::Backwards) => "backwards",
        Err(CheckpointError::BeyondDelivered) => "beyond_delivered",
        Err(CheckpointError::ShuttingDown) => "shutting_down",
        Err(CheckpointError::NothingPrepared) => "nothing_prepared",
        Err(CheckpointError::Throttled) => "throttled",
        Err(CheckpointError::OutcomeUnknown) => "outcome_unknown",
        Err(_) => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kcl_core::{RecordPosition, SequenceNumber};

    fn at(n: u64) -> Position {
        Position::Record(RecordPosition::new(
            SequenceNumber::parse(&n.to_string()).expect("digits"),
        ))
    }

    #[test]
    fn each_answer_once_and_true() {
        let mut l = CheckpointLedger::default();
        let shard = LeaseKey::from("shard-1");
        l.asked(0, (1, 1), 7, &shard, Some(at(5)));
        l.asked(0, (1, 1), 8, &shard, Some(at(6)));
        l.asked(0, (2, 1), 7, &shard, None);
        assert_eq!(l.answered((1, 1), 7, &Ok(()), |_| Some(at(5))), None);
        assert!(l
            .answered((1, 1), 7, &Ok(()), |_| Some(at(5)))
            .is_some_and(|w| w.contains("answered twice")));
        assert!(l
            .answered((1, 1), 8, &Ok(()), |_| Some(at(5)))
            .is_some_and(|w| w.contains("table holds")));
        assert_eq!(
            l.overdue(1),
            Some((
                1,
                "ticket 7 of worker node 2 on shard-1, asked at 0 ms".into()
            ))
        );
        l.forget(2, 1);
        assert_eq!(l.overdue(1), None);
        assert_eq!(l.asked, 3);
        assert_eq!(l.answers.get("ok"), Some(&3));
    }
}
