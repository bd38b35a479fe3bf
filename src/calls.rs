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
    meter: RefCell<Meter>,
}

impl Calls {
    pub fn new(limit: u32) -> Self {
        Self {
            budget: Rc::new(Budget {
                limit,
                used: Cell::new(0),
            }),
            meter: RefCell::new(Meter::default()),
        }
    }

    /// Another unit of work in the same invocation: the same budget, its own meter.
    pub fn share(&self) -> Self {
        Self {
            budget: Rc::clone(&self.budget),
            meter: RefCell::new(Meter::default()),
        }
    }

    /// Spend one call, or refuse before it is made.
    pub fn spend(&self, call: Call) -> Result<(), StoreError> {
        let used = self.budget.used.get();
        if used >= self.budget.limit {
            return Err(StoreError::OverBudget);
        }
        self.budget.used.set(used + 1);
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

    /// Calls the invocation may still make.
    pub fn left(&self) -> u32 {
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
