//! The arena's bytes, shared until written. A case, the machine that runs it
//! and the run's outcome hold the same bytes until the first write makes the
//! writer's own copy, so a run that writes no memory (about three runs in four
//! of the generated cases) neither copies nor reads the arena, and an outcome
//! compares equal to the case's arena without looking at a byte. Reads and
//! writes see a `Vec<u8>`; only the first write of a shared arena copies it.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

#[derive(Clone, Default)]
pub struct ArenaBytes(Arc<Vec<u8>>);

impl ArenaBytes {
    /// Whether `self` and `other` are the same bytes, not merely equal ones.
    pub fn shares(&self, other: &ArenaBytes) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
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
