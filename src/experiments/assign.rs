//! Sticky arm assignment: a stable hash of (experiment, stickiness key) to
//! a point in [0, 1), then the arm whose cumulative share covers it.
//!
//! The hash is FNV-1a (64 bit) with a SplitMix64 finaliser: fixed, so the
//! same user lands in the same arm on every instance and after restarts,
//! and salted by the experiment name, so arms of different experiments are
//! independent. Candidates come first on the line, so raising a candidate's
//! share (a ramp step) only moves control users into it, never out.

pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over `bytes`, continuing from `h` (start with [`FNV_OFFSET`]).
pub fn fnv1a(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, b| (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME))
}

/// SplitMix64's finaliser: spreads FNV's bits over the whole word.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The position of `key` on experiment `name`'s line, in [0, 1).
pub fn unit(name: &str, key: &str) -> f64 {
    let h = fnv1a(fnv1a(fnv1a(FNV_OFFSET, name.as_bytes()), &[0x1f]), key.as_bytes());
    (mix(h) >> 11) as f64 / (1u64 << 53) as f64
}

/// The candidate whose cumulative share covers `u` (None: the control).
pub fn pick(u: f64, shares: impl IntoIterator<Item = f64>) -> Option<usize> {
    let mut edge = 0.0;
    for (i, s) in shares.into_iter().enumerate() {
        edge += s.max(0.0);
        if u < edge {
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per-arm counts over 10,000 keys stay within 4 standard deviations of
    /// the binomial expectation, and a chi-square test does not reject.
    #[test]
    fn experiment_shares_hold_over_10000_assignments() {
        let n = 10_000usize;
        for (name, shares) in [
            ("exp-a", vec![0.1]),
            ("exp-b", vec![0.25, 0.25]),
            ("mini-swap", vec![0.05, 0.15, 0.3]),
            ("half", vec![0.5]),
        ] {
            let mut counts = vec![0usize; shares.len() + 1];
            for i in 0..n {
                let key = format!("user-{i}");
                match pick(unit(name, &key), shares.iter().copied()) {
                    Some(c) => counts[c] += 1,
                    None => counts[shares.len()] += 1,
                }
            }
            let control = 1.0 - shares.iter().sum::<f64>();
            let expected: Vec<f64> = shares.iter().copied().chain([control]).collect();
            let mut chi2 = 0.0;
            for (c, p) in counts.iter().zip(&expected) {
                let mean = n as f64 * p;
                let sd = (n as f64 * p * (1.0 - p)).sqrt();
                assert!(
                    (*c as f64 - mean).abs() <= 4.0 * sd,
                    "{name}: {c} assignments, expected {mean} +/- {sd}"
                );
                chi2 += (*c as f64 - mean).powi(2) / mean;
            }
            // Critical values at p = 0.001 for 1..3 degrees of freedom.
            let critical = [10.83, 13.82, 16.27][shares.len() - 1];
            assert!(chi2 < critical, "{name}: chi-square {chi2} >= {critical}");
        }
    }

    #[test]
    fn experiment_assignment_is_sticky_and_salted() {
        let a = unit("exp", "alice");
        assert_eq!(a, unit("exp", "alice"));
        assert!((0.0..1.0).contains(&a));
        // Another experiment places the same user independently.
        let same = (0..1000)
            .filter(|i| {
                let k = format!("u{i}");
                pick(unit("one", &k), [0.5]) == pick(unit("two", &k), [0.5])
            })
            .count();
        assert!((400..600).contains(&same), "{same}");
        // Raising the share only moves control users into the candidate.
        for i in 0..2000 {
            let u = unit("ramp", &format!("u{i}"));
            if pick(u, [0.1]).is_some() {
                assert!(pick(u, [0.25]).is_some());
            }
        }
        assert_eq!(pick(0.05, [0.1, 0.2]), Some(0));
        assert_eq!(pick(0.25, [0.1, 0.2]), Some(1));
        assert_eq!(pick(0.35, [0.1, 0.2]), None);
        assert_eq!(pick(0.0, [0.0]), None);
    }
}
