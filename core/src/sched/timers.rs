//! Timers: deadlines on the scheduler's clock, each resuming one waiting
//! fiber; fired on every IO/timer turn.

use super::Scheduler;
use crate::backend::Resumer;

impl Scheduler {
    pub(crate) fn add_timer(&self, deadline: u64, r: Resumer<()>) -> (u64, u64) {
        let seq = self.timer_seq.get();
        self.timer_seq.set(seq + 1);
        self.timers.borrow_mut().insert((deadline, seq), r);
        (deadline, seq)
    }

    pub(crate) fn remove_timer(&self, key: (u64, u64)) {
        self.timers.borrow_mut().remove(&key);
    }

    pub(super) fn fire_timers(&self) -> bool {
        if self.timers.borrow().is_empty() {
            return false;
        }
        let now = self.now();
        let mut fired = false;
        loop {
            let entry = {
                let mut t = self.timers.borrow_mut();
                match t.first_key_value() {
                    Some((&(d, _), _)) if d <= now => t.pop_first(),
                    _ => None,
                }
            };
            match entry {
                Some((_, r)) => {
                    fired |= r.resume(()).is_ok();
                }
                None => break,
            }
        }
        fired
    }
}
