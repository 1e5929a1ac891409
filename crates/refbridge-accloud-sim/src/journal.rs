//! The request journal: one entry per API request (control calls excluded).

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::faults::{Endpoint, FaultKind};

/// What happened to the response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A response was sent.
    Responded,
    /// The connection was closed without a response.
    Dropped,
    /// The response was held back for a long time (it is sent afterwards,
    /// if the caller is still there).
    Hung,
}

/// One journaled request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Sequence number, from 1, in order of completion.
    pub seq: u64,
    /// When the request was received.
    pub at: DateTime<Utc>,
    /// HTTP method.
    pub method: String,
    /// Request path (no query string).
    pub path: String,
    /// The endpoint, when the path matched one.
    pub endpoint: Option<Endpoint>,
    /// Status sent to the caller; `None` when the connection was dropped.
    pub status: Option<u16>,
    /// Status the handler produced (differs from `status` under an
    /// after-commit fault; `None` when the handler did not run).
    pub handler_status: Option<u16>,
    /// What happened to the response.
    pub outcome: Outcome,
    /// Outcome fault applied, if any.
    pub fault: Option<FaultKind>,
    /// Added latency, if any.
    pub latency_ms: Option<u64>,
}

impl JournalEntry {
    /// Whether the handler ran and succeeded (2xx): its effect is committed.
    pub fn committed(&self) -> bool {
        self.handler_status.is_some_and(|s| (200..300).contains(&s))
    }
}

pub(crate) struct Journal {
    entries: VecDeque<JournalEntry>,
    capacity: usize,
    next_seq: u64,
}

impl Journal {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            capacity: capacity.max(1),
            next_seq: 1,
        }
    }

    pub(crate) fn push(&mut self, mut entry: JournalEntry) {
        entry.seq = self.next_seq;
        self.next_seq += 1;
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    pub(crate) fn entries(&self) -> Vec<JournalEntry> {
        self.entries.iter().cloned().collect()
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }
}
