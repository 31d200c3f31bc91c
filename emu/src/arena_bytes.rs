//! The arena's bytes, shared until written. A case, the machine that runs it
//! and the run's outcome hold the same bytes until the first write makes the
//! writer's own copy, so a run that writes no memory (about three runs in four
//! of the generated cases) neither copies nor reads the arena, and an outcome
//! compares equal to the case's arena without looking at a byte. Reads and
//! writes see a `Vec<u8>`; only the first write of a shared arena copies it
//! (a save's: only the bytes it leaves, [`ArenaBytes::written_over`]).

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

#[derive(Clone, Default)]
pub struct ArenaBytes(Arc<Vec<u8>>);

impl ArenaBytes {
    /// Whether `self` and `other` are the same bytes, not merely equal ones.
    pub fn shares(&self, other: &ArenaBytes) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The bytes to write in place, when nothing else holds them.
    pub fn unshared_mut(&mut self) -> Option<&mut [u8]> {
        Arc::get_mut(&mut self.0).map(|v| &mut v[..])
    }

    /// A copy of these bytes that `write` builds in address order
    /// ([`Overwrite::at`]): the bytes it writes are not copied, so a first
    /// write of shared bytes reads only what it leaves.
    pub fn written_over(&self, write: impl FnOnce(&mut Overwrite)) -> ArenaBytes {
        let mut o = Overwrite {
            old: &self.0,
            new: Vec::with_capacity(self.len()),
        };
        write(&mut o);
        let at = o.new.len();
        o.new.extend_from_slice(&self[at..]);
        o.new.into()
    }
}

/// A copy being built by [`ArenaBytes::written_over`].
pub struct Overwrite<'a> {
    old: &'a [u8],
    new: Vec<u8>,
}

impl Overwrite<'_> {
    /// The copy up to `offset` (the old bytes from where it ended), to be
    /// extended with the bytes written there: at or after the end of the last
    /// ones. Their address is `as_ptr() + len()`.
    pub fn at(&mut self, offset: usize) -> &mut Vec<u8> {
        let at = self.new.len();
        self.new.extend_from_slice(&self.old[at..offset]);
        &mut self.new
    }
}

impl Deref for ArenaBytes {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for ArenaBytes {
    /// The first write of shared bytes copies them.
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        Arc::make_mut(&mut self.0)
    }
}

impl From<Vec<u8>> for ArenaBytes {
    fn from(v: Vec<u8>) -> ArenaBytes {
        ArenaBytes(Arc::new(v))
    }
}

impl<'a> IntoIterator for &'a ArenaBytes {
    type Item = &'a u8;
    type IntoIter = std::slice::Iter<'a, u8>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl PartialEq for ArenaBytes {
    fn eq(&self, other: &ArenaBytes) -> bool {
        self.shares(other) || self.0 == other.0
    }
}

impl Eq for ArenaBytes {}

impl std::fmt::Debug for ArenaBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clone shares the bytes until a write; the write copies them and the
    /// original keeps its value.
    #[test]
    fn a_write_copies_shared_bytes_and_leaves_the_original() {
        let a = ArenaBytes::from(vec![1u8, 2, 3]);
        let mut b = a.clone();
        assert!(b.shares(&a));
        assert_eq!(b, a);
        b[1] = 9;
        assert!(!b.shares(&a));
        assert_eq!(*a, vec![1, 2, 3]);
        assert_eq!(*b, vec![1, 9, 3]);
        assert_ne!(a, b);
        // Equal bytes that are not shared still compare equal.
        assert_eq!(ArenaBytes::from(vec![1, 2, 3]), a);
    }

    /// `written_over` leaves the original alone and gives its bytes with
    /// the writes over them: at the start, adjacent ones, at the end.
    #[test]
    fn written_over_is_the_bytes_with_the_writes() {
        let a = ArenaBytes::from((0u8..16).collect::<Vec<_>>());
        let b = a.written_over(|c| {
            c.at(0).extend_from_slice(&[100, 101]);
            c.at(5).push(105);
            c.at(6).push(106);
            c.at(14).extend_from_slice(&[114, 115]);
        });
        let mut want: Vec<u8> = (0..16).collect();
        for k in [0, 1, 5, 6, 14, 15] {
            want[k] += 100;
        }
        assert_eq!(*b, want);
        assert_eq!(*a, (0..16).collect::<Vec<u8>>());
        assert!(!b.shares(&a));
    }

    /// Bytes held once are written in place: no copy.
    #[test]
    fn a_write_of_unshared_bytes_is_in_place() {
        let mut a = ArenaBytes::from(vec![0u8; 4096]);
        let p = a.as_ptr();
        a[7] = 1;
        assert_eq!(a.as_ptr(), p);
        assert_eq!(a[7], 1);
    }
}
