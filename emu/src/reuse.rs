//! Buffers a finished run leaves to the next run on the same thread: the
//! state (its extended region is thousands of bytes, 11 KB with AMX) and a
//! save's write collection. A reused state (boxed: handed over without
//! moving it) is reset in place ([`XState::reset_in_place`]): only the
//! components the last run changed are rewritten, so a case that never
//! touches TILEDATA costs nothing for it.

use crate::model::CpuModel;
use crate::state::XState;
use crate::writes::Writes;
use std::cell::Cell;

thread_local! {
    static SPARE: Cell<Option<(Box<XState>, Writes)>> = const { Cell::new(None) };
}

/// A power-on state for `model` and an empty write collection, reused from the
/// last run on this thread when there was one.
pub fn take(model: &CpuModel) -> (Box<XState>, Writes) {
    match SPARE.take() {
        Some((mut st, w)) => {
            st.reset_in_place(model);
            (st, w)
        }
        None => (Box::new(XState::reset(model)), Writes::default()),
    }
}

/// Leaves a run's buffers to the next run on this thread.
pub fn give(st: Box<XState>, w: Writes) {
    SPARE.set(Some((st, w)));
}
