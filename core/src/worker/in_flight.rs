//! The requests a worker has sent and not had answered, by id.

use alloc::collections::VecDeque;

use super::Pending;
use crate::io::RequestId;
use crate::time::Instant;

/// Requests in flight with their timeouts. Ids are handed out one after another and every
/// request has the same timeout, so one queue in sending order serves both: an answer finds its
/// request by subtracting the oldest id (no search), and the oldest request in flight is the
/// next to time out. Answered requests leave a hole until the holes before them are answered
/// too; a fetch answered every second does not wait behind a scan that takes a few.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    /// The id of `queue[0]`.
    first: u64,
    queue: VecDeque<(Instant, Option<Pending>)>,
    /// Requests still unanswered.
    live: usize,
}

impl InFlight {
    /// Adds the request with the next id after the last one added.
    pub(crate) fn add(&mut self, req: RequestId, deadline: Instant, pending: Pending) {
        if self.queue.is_empty() {
            self.first = req.0;
        }
        debug_assert_eq!(req.0, self.first + self.queue.len() as u64, "ids in order");
        self.queue.push_back((deadline, Some(pending)));
        self.live += 1;
    }

    /// What `req` was for, if it is still in flight; it is not any more.
    pub(crate) fn take(&mut self, req: RequestId) -> Option<Pending> {
        let at = usize::try_from(req.0.checked_sub(self.first)?).ok()?;
        let pending = self.queue.get_mut(at)?.1.take()?;
        self.live -= 1;
        while let Some((_, None)) = self.queue.front() {
            self.queue.pop_front();
            self.first += 1;
        }
        Some(pending)
    }

    /// The oldest request in flight and its timeout.
    pub(crate) fn oldest(&self) -> Option<(RequestId, Instant)> {
        self.queue
            .front()
            .map(|(deadline, _)| (RequestId(self.first), *deadline))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn answers_in_any_order_leave_the_oldest_unanswered_first() {
        let mut f = InFlight::default();
        for id in 1..=4 {
            f.add(RequestId(id), at(id * 10), Pending::Scan);
        }
        assert!(f.take(RequestId(2)).is_some());
        assert!(f.take(RequestId(2)).is_none(), "answered once");
        assert_eq!(f.oldest(), Some((RequestId(1), at(10))));
        assert!(f.take(RequestId(1)).is_some());
        assert_eq!(
            f.oldest(),
            Some((RequestId(3), at(30))),
            "the hole at 2 is gone"
        );
        assert!(f.take(RequestId(9)).is_none(), "unknown");
        assert!(f.take(RequestId(0)).is_none(), "long gone");
        assert_eq!(f.len(), 2);
        assert!(f.take(RequestId(4)).is_some());
        assert!(f.take(RequestId(3)).is_some());
        assert!(f.is_empty());
        assert_eq!(f.oldest(), None);
        f.add(RequestId(5), at(50), Pending::ListShards);
        assert_eq!(f.oldest(), Some((RequestId(5), at(50))));
    }
}
