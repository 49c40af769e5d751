//! What qusd carries from one pass to the next besides the kernel's view:
//! when to look again (a failed pass, an interpreter busy at registration,
//! a refused state dir), its own ownership records, and the takeovers
//! that failed. Kept apart from the event loop because each is a rule of
//! its own about time or trust, and all of them are decided here from
//! what a pass left.

use std::time::Duration;

use super::rules;
use crate::model::{FailedTakeovers, OwnedEntries};

/// What one pass that ran left for the next.
pub struct Left {
    /// Entries whose interpreter was open for writing (ETXTBSY).
    pub busy: Vec<String>,
    /// The ownership records as the pass left them.
    pub owned_after: OwnedEntries,
    /// Why the state dir was refused, if it was.
    pub state_refused: Option<String>,
    /// Entries this pass registered, replaced or enabled.
    pub registered: Vec<String>,
    /// Takeovers that failed in this pass.
    pub failed_takeovers: FailedTakeovers,
}

#[derive(Debug, Default)]
pub struct Memory {
    /// How long to wait before retrying after failed passes in a row.
    backoff: Option<Duration>,
    /// How long to wait before trying again entries whose interpreter was
    /// open for writing (see [`rules::busy_retry`]).
    busy_retry: Option<Duration>,
    /// The last pass found the state dir refused: look again in a second,
    /// so a fix is taken up at once (nothing watches its mode).
    state_refused: bool,
    /// What this qusd registered, as its last pass left the records: it
    /// goes on repairing those while the state dir is refused.
    pub remembered: Option<OwnedEntries>,
    /// Takeovers that failed, not tried again while nothing changed (see
    /// [`crate::model::World::failed_takeovers`]).
    pub failed_takeovers: FailedTakeovers,
}

impl Memory {
    /// A pass that failed as a whole (its error is logged already).
    pub fn pass_failed(&mut self) {
        self.backoff = rules::backoff(self.backoff, true);
    }

    /// Take in what a pass that ran left, saying what changed.
    pub fn take_in(&mut self, left: Left) {
        self.backoff = None;
        for name in &left.registered {
            self.failed_takeovers.remove(name);
        }
        self.failed_takeovers.extend(left.failed_takeovers);
        match (&left.state_refused, self.state_refused) {
            (Some(why), false) => tracing::warn!(
                "{why}; repairing what this qusd registered from its own records, writing \
                 nothing there; looking again every second"
            ),
            (None, true) => {
                tracing::info!("state dir trusted again: records are kept there again")
            }
            _ => {}
        }
        self.state_refused = left.state_refused.is_some();
        self.remembered = Some(left.owned_after);
        if self.busy_retry.is_none() && !left.busy.is_empty() {
            tracing::info!(
                "{}: interpreter open for writing (text file busy); trying again \
                 until its writer closes it",
                left.busy.join(", ")
            );
        }
        self.busy_retry = rules::busy_retry(self.busy_retry, !left.busy.is_empty());
    }

    /// Is the next try a retry after failed passes?
    pub fn after_failure(&self) -> bool {
        self.backoff.is_some()
    }

    /// A new configuration (or SIGHUP): failed takeovers may work now.
    pub fn new_configuration(&mut self) {
        self.failed_takeovers.clear();
    }

    /// When to run another pass though nothing happened, if anything
    /// waits: the soonest of the three.
    pub fn next_try(&self) -> Option<Duration> {
        [
            self.backoff,
            self.busy_retry,
            self.state_refused.then_some(rules::STATE_RECHECK),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn left(busy: bool, refused: bool) -> Left {
        Left {
            busy: if busy { vec!["qemu-a".into()] } else { vec![] },
            owned_after: OwnedEntries::new(),
            state_refused: refused.then(|| "refused".to_string()),
            registered: vec![],
            failed_takeovers: FailedTakeovers::new(),
        }
    }

    #[test]
    fn the_soonest_wait_wins_and_a_quiet_pass_waits_for_nothing() {
        let mut m = Memory::default();
        assert_eq!(m.next_try(), None);
        m.pass_failed();
        assert_eq!(m.next_try(), Some(Duration::from_secs(1)));
        m.take_in(left(true, true));
        assert_eq!(m.next_try(), Some(Duration::from_millis(250)), "busy first");
        m.take_in(left(false, true));
        assert_eq!(m.next_try(), Some(rules::STATE_RECHECK));
        m.take_in(left(false, false));
        assert_eq!(m.next_try(), None);
        assert!(m.remembered.is_some());
    }
}
