//! What an invocation spends on other services: every D1, KV, Queue and fetch call goes
//! through here, against the plan's per-invocation limit (Free: 50), shared by all the work
//! of the invocation, and is metered per unit of work (request, job, cron run) for its log
//! line: D1 rows read and written come from each result's `meta`.

use crate::error::StoreError;
use serde::Serialize;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

#[derive(Debug, Default, Clone, Serialize)]
pub struct Meter {
    pub d1_calls: u32,
    pub d1_statements: u32,
    pub d1_rows_read: u64,
    pub d1_rows_written: u64,
    pub kv_reads: u32,
    pub kv_writes: u32,
    pub queue_messages: u32,
    pub fetches: u32,
}

/// A call to another service.
#[derive(Debug, Clone, Copy)]
pub enum Call {
    D1,
    KvRead,
    KvWrite,
    /// One send or sendBatch call carrying this many messages.
    Queue(u32),
    Fetch,
}

struct Budget {
    limit: u32,
    used: Cell<u32>,
}

pub struct Calls {
    budget: Rc<Budget>,
    /// Calls this unit of work set aside ([`Calls::reserve`]) and has not made yet: already
    /// counted as used, so no other unit of the invocation can spend them.
    reserved: Cell<u32>,
    meter: RefCell<Meter>,
}

impl Calls {
    pub fn new(limit: u32) -> Self {
        Self {
            budget: Rc::new(Budget {
                limit,
                used: Cell::new(0),
            }),
            reserved: Cell::new(0),
            meter: RefCell::new(Meter::default()),
        }
    }

    /// Another unit of work in the same invocation: the same budget, its own meter.
    pub fn share(&self) -> Self {
        Self {
            budget: Rc::clone(&self.budget),
            reserved: Cell::new(0),
            meter: RefCell::new(Meter::default()),
        }
    }

    /// Spend one call, or refuse before it is made.
    pub fn spend(&self, call: Call) -> Result<(), StoreError> {
        let reserved = self.reserved.get();
        if reserved > 0 {
            self.reserved.set(reserved - 1);
        } else {
            let used = self.budget.used.get();
            if used >= self.budget.limit {
                return Err(StoreError::OverBudget);
            }
            self.budget.used.set(used + 1);
        }
        let mut meter = self.meter.borrow_mut();
        match call {
            Call::D1 => meter.d1_calls += 1,
            Call::KvRead => meter.kv_reads += 1,
            Call::KvWrite => meter.kv_writes += 1,
            Call::Queue(messages) => meter.queue_messages += messages,
            Call::Fetch => meter.fetches += 1,
        }
        Ok(())
    }

    /// Sets aside `n` calls (counting those already set aside) before a step that must be
    /// finished once taken: after a D1 write, the KV projection of what it wrote. Units of work
    /// run concurrently on one budget; without this, another could spend the last calls between
    /// the write and the projection and leave an older state readable in KV. Refused, with
    /// nothing set aside, when the budget cannot cover it.
    pub fn reserve(&self, n: u32) -> Result<(), StoreError> {
        let more = n.saturating_sub(self.reserved.get());
        let used = self.budget.used.get();
        if used.saturating_add(more) > self.budget.limit {
            return Err(StoreError::OverBudget);
        }
        self.budget.used.set(used + more);
        self.reserved.set(self.reserved.get() + more);
        Ok(())
    }

    /// Gives back what this unit of work set aside and did not need.
    pub fn release(&self) {
        let reserved = self.reserved.replace(0);
        self.budget
            .used
            .set(self.budget.used.get().saturating_sub(reserved));
    }

    /// Calls the invocation may still make.
    #[cfg(test)]
    fn left(&self) -> u32 {
        self.budget.limit.saturating_sub(self.budget.used.get())
    }

    pub fn record_d1(&self, statements: u32, rows_read: u64, rows_written: u64) {
        let mut meter = self.meter.borrow_mut();
        meter.d1_statements += statements;
        meter.d1_rows_read += rows_read;
        meter.d1_rows_written += rows_written;
    }

    pub fn meter(&self) -> Meter {
        self.meter.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_cannot_be_spent_by_another_unit_of_work() {
        let invocation = Calls::new(10);
        let job = invocation.share();
        let other = invocation.share();
        for _ in 0..4 {
            assert!(job.spend(Call::D1).is_ok());
        }
        assert!(job.reserve(5).is_ok());
        assert_eq!(invocation.left(), 1);
        assert!(other.spend(Call::Fetch).is_ok());
        assert!(matches!(
            other.spend(Call::Fetch),
            Err(StoreError::OverBudget)
        ));
        // The reserved calls are still there for the job that set them aside.
        for _ in 0..5 {
            assert!(job.spend(Call::KvWrite).is_ok());
        }
        assert!(job.spend(Call::KvWrite).is_err());
        assert_eq!(job.meter().kv_writes, 5);
    }

    #[test]
    fn a_reservation_tops_up_is_refused_whole_and_gives_back_what_was_not_used() {
        let invocation = Calls::new(6);
        let job = invocation.share();
        assert!(job.reserve(4).is_ok());
        assert!(job.reserve(4).is_ok());
        assert_eq!(
            invocation.left(),
            2,
            "a second reservation of 4 adds nothing"
        );
        assert!(job.reserve(7).is_err(), "more than the budget holds");
        assert_eq!(
            invocation.left(),
            2,
            "a refused reservation sets nothing aside"
        );
        assert!(job.spend(Call::D1).is_ok());
        job.release();
        assert_eq!(invocation.left(), 5);
        assert!(job.spend(Call::D1).is_ok());
        assert_eq!(
            invocation.left(),
            4,
            "spent from the budget again once released"
        );
    }
}
