//! Numbers that stay with what they stand for from one revision to the
//! next: address classes by their memberships, counter slots by the rules
//! they count for. Pure.
//!
//! The verdict table numbers classes afresh for every NodePolicy; were
//! those numbers written as they are, adding one set would renumber the
//! classes after it and rewrite every verdict entry that names them. Kept
//! here, a one-rule change rewrites only the entries whose answer changed.

use std::collections::BTreeMap;

/// More distinct things than the map holding their numbers has room for.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("more than {limit} {what} in use at once")]
pub struct Exhausted {
    pub what: &'static str,
    pub limit: u32,
}

/// Hands out numbers in `first..limit`, one per distinct key, reusing
/// released ones.
#[derive(Clone, Debug)]
pub struct Interner<K> {
    what: &'static str,
    ids: BTreeMap<K, u32>,
    keys: BTreeMap<u32, K>,
    free: Vec<u32>,
    next: u32,
    limit: u32,
}

impl<K: Ord + Clone> Interner<K> {
    pub fn new(what: &'static str, first: u32, limit: u32) -> Interner<K> {
        Interner {
            what,
            ids: BTreeMap::new(),
            keys: BTreeMap::new(),
            free: Vec::new(),
            next: first,
            limit,
        }
    }

    /// The number of `key`, given now if it has none.
    pub fn id(&mut self, key: &K) -> Result<u32, Exhausted> {
        if let Some(&id) = self.ids.get(key) {
            return Ok(id);
        }
        let id = match self.free.pop() {
            Some(id) => id,
            None if self.next < self.limit => {
                self.next += 1;
                self.next - 1
            }
            None => {
                return Err(Exhausted {
                    what: self.what,
                    limit: self.limit,
                });
            }
        };
        self.ids.insert(key.clone(), id);
        self.keys.insert(id, key.clone());
        Ok(id)
    }

    /// What `id` stands for.
    pub fn key(&self, id: u32) -> Option<&K> {
        self.keys.get(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &K)> {
        self.keys.iter().map(|(&id, key)| (id, key))
    }

    /// Releases every number `keep` refuses, for reuse; returns them with
    /// what they stood for.
    pub fn release(&mut self, keep: impl Fn(u32) -> bool) -> Vec<(u32, K)> {
        let gone: Vec<u32> = self.keys.keys().copied().filter(|&id| !keep(id)).collect();
        let mut released = Vec::new();
        for id in gone {
            if let Some(key) = self.keys.remove(&id) {
                self.ids.remove(&key);
                self.free.push(id);
                released.push((id, key));
            }
        }
        released
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn numbers_stay_with_their_keys_and_are_reused_once_released() {
        let mut ids: Interner<&str> = Interner::new("things", 2, 5);
        assert_eq!(
            (ids.id(&"a"), ids.id(&"b"), ids.id(&"a")),
            (Ok(2), Ok(3), Ok(2))
        );
        assert_eq!(ids.id(&"c"), Ok(4));
        assert_eq!(
            ids.id(&"d"),
            Err(Exhausted {
                what: "things",
                limit: 5
            })
        );
        assert_eq!(ids.release(|id| id != 3), vec![(3, "b")]);
        assert_eq!(ids.key(3), None);
        assert_eq!(ids.id(&"d"), Ok(3));
        assert_eq!((ids.id(&"a"), ids.key(4)), (Ok(2), Some(&"c")));
    }
}
