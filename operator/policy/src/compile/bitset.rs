//! Fixed-size bit sets over members, atoms or rules: the compiler's inner
//! loops are unions and in-order intersections of these.

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    /// An empty set for indices `0..len`.
    pub fn new(len: usize) -> BitSet {
        BitSet {
            words: vec![0; len.div_ceil(64)],
        }
    }

    /// `0..len`, all present.
    pub fn full(len: usize) -> BitSet {
        let mut set = BitSet {
            words: vec![u64::MAX; len.div_ceil(64)],
        };
        if !len.is_multiple_of(64)
            && let Some(last) = set.words.last_mut()
        {
            *last = (1u64 << (len % 64)) - 1;
        }
        set
    }

    pub fn insert(&mut self, i: usize) {
        self.words[i / 64] |= 1 << (i % 64);
    }

    pub fn contains(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub fn union_with(&mut self, other: &BitSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    pub fn intersect_with(&mut self, other: &BitSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= b;
        }
    }

    /// `self |= a & b`, word by word.
    pub fn union_with_both(&mut self, a: &BitSet, b: &BitSet) {
        for ((s, x), y) in self.words.iter_mut().zip(&a.words).zip(&b.words) {
            *s |= x & y;
        }
    }

    /// `self &= !other`, word by word.
    pub fn difference_with(&mut self, other: &BitSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= !b;
        }
    }

    pub fn remove(&mut self, i: usize) {
        self.words[i / 64] &= !(1 << (i % 64));
    }

    /// Sets every bit of `0..len`.
    pub fn fill(&mut self, len: usize) {
        *self = BitSet::full(len);
    }

    pub fn clear(&mut self) {
        self.words.iter_mut().for_each(|w| *w = 0);
    }

    /// Everything in `0..len` that is not in the set.
    pub fn complement(&self, len: usize) -> BitSet {
        let mut out = BitSet::full(len);
        for (a, b) in out.words.iter_mut().zip(&self.words) {
            *a &= !b;
        }
        out
    }

    /// Members in ascending order.
    pub fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        ones(self.words.iter().copied())
    }

    /// Members of both sets in ascending order, without building the intersection.
    pub fn both<'a>(a: &'a BitSet, b: &'a BitSet) -> impl Iterator<Item = usize> + 'a {
        ones(a.words.iter().zip(&b.words).map(|(x, y)| x & y))
    }
}

fn ones(words: impl Iterator<Item = u64>) -> impl Iterator<Item = usize> {
    words.enumerate().flat_map(|(i, mut word)| {
        std::iter::from_fn(move || {
            if word == 0 {
                return None;
            }
            let bit = word.trailing_zeros() as usize;
            word &= word - 1;
            Some(i * 64 + bit)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_agree_with_a_vector_model() {
        let mut a = BitSet::new(130);
        let mut b = BitSet::new(130);
        for i in [0, 5, 63, 64, 100, 129] {
            a.insert(i);
        }
        for i in [5, 64, 65, 129] {
            b.insert(i);
        }
        assert_eq!(a.ones().collect::<Vec<_>>(), vec![0, 5, 63, 64, 100, 129]);
        assert_eq!(BitSet::both(&a, &b).collect::<Vec<_>>(), vec![5, 64, 129]);
        assert_eq!(a.complement(130).ones().count(), 124);
        assert_eq!(BitSet::full(130).ones().count(), 130);
        assert!(!a.contains(1) && a.contains(129) && !a.contains(1000));
        let mut d = BitSet::new(130);
        d.union_with_both(&a, &b);
        assert_eq!(d.ones().collect::<Vec<_>>(), vec![5, 64, 129]);
        d.difference_with(&b);
        assert_eq!(d.ones().count(), 0);
        d.fill(130);
        d.remove(3);
        assert_eq!(d.ones().count(), 129);
        d.clear();
        assert_eq!(d.ones().count(), 0);
        let mut c = a.clone();
        c.union_with(&b);
        assert_eq!(c.ones().count(), 7);
        c.intersect_with(&b);
        assert_eq!(c, b);
    }
}
