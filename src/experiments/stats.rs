//! Small statistics for experiment reports: running mean and variance,
//! Student-t 95% intervals, Welch's difference of means, percentiles.

use serde::Serialize;

/// Two-sided 95% quantiles of Student's t for 1..=30 degrees of freedom.
const T975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
    2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
];

/// The 0.975 quantile of Student's t with `df` degrees of freedom: the
/// table up to 30 (fractional df rounded down, which is conservative), a
/// Cornish-Fisher expansion around the normal quantile above.
pub fn t975(df: f64) -> f64 {
    if !df.is_finite() || df < 1.0 {
        return T975[0];
    }
    let d = df.floor();
    if d <= 30.0 {
        return T975[d as usize - 1];
    }
    let z: f64 = 1.959_963_985;
    z + (z.powi(3) + z) / (4.0 * df) + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * df * df)
}

/// Count, mean and (Welford) sum of squared deviations.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    pub n: u64,
    pub mean: f64,
    m2: f64,
}

impl Summary {
    pub fn push(&mut self, x: f64) {
        self.n += 1;
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
    }

    pub fn of(xs: impl IntoIterator<Item = f64>) -> Summary {
        let mut s = Summary::default();
        for x in xs {
            s.push(x);
        }
        s
    }

    /// Sample variance (n - 1); None below two samples.
    pub fn variance(&self) -> Option<f64> {
        (self.n >= 2).then(|| self.m2 / (self.n - 1) as f64)
    }

    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then_some(self.mean)
    }

    /// Half-width of the 95% confidence interval of the mean (Student t).
    pub fn ci95(&self) -> Option<f64> {
        let v = self.variance()?;
        Some(t975((self.n - 1) as f64) * (v / self.n as f64).sqrt())
    }
}

/// `b - a` with the half-width of its 95% confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Difference {
    pub diff: f64,
    pub ci95: f64,
    /// The interval excludes 0.
    pub significant: bool,
}

/// Welch's t interval for the difference of two means (`b - a`); None
/// unless both sides have at least two samples.
pub fn welch(a: &Summary, b: &Summary) -> Option<Difference> {
    let (va, vb) = (a.variance()?, b.variance()?);
    let (na, nb) = (a.n as f64, b.n as f64);
    let (qa, qb) = (va / na, vb / nb);
    let se2 = qa + qb;
    let diff = b.mean - a.mean;
    if se2 <= 0.0 {
        // No spread on either side: the difference is exact.
        return Some(Difference {
            diff,
            ci95: 0.0,
            significant: diff != 0.0,
        });
    }
    let df = se2 * se2 / (qa * qa / (na - 1.0) + qb * qb / (nb - 1.0));
    let ci95 = t975(df) * se2.sqrt();
    Some(Difference {
        diff,
        ci95,
        significant: diff.abs() > ci95,
    })
}

/// The nearest-rank percentile (`p` in 0..=1) of ascending `sorted` values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.max(1) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn experiment_stats_intervals() {
        let s = Summary::of([1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.n, 4);
        assert!((s.mean - 2.5).abs() < 1e-12);
        assert!((s.variance().unwrap_or(0.0) - 5.0 / 3.0).abs() < 1e-12);
        // t(3) = 3.182; sd/sqrt(n) = sqrt(5/12)
        let hw = s.ci95().unwrap_or(0.0);
        assert!((hw - 3.182 * (5.0f64 / 12.0).sqrt()).abs() < 1e-9, "{hw}");
        assert_eq!(Summary::of([1.0]).ci95(), None);
        assert!((t975(30.0) - 2.042).abs() < 1e-9);
        assert!((t975(31.0) - 2.040).abs() < 2e-3);
        assert!((t975(1e9) - 1.96).abs() < 1e-3);
        assert_eq!(t975(0.2), 12.706);
        // Welch: clearly different samples are significant, overlapping ones not.
        let a = Summary::of([0.8, 0.9, 0.85, 0.95, 0.9, 0.88]);
        let b = Summary::of([0.2, 0.3, 0.25, 0.2, 0.3, 0.22]);
        let d = welch(&a, &b).expect("diff");
        assert!(d.diff < -0.5 && d.significant, "{d:?}");
        let c = Summary::of([0.0, 1.0, 1.0, 0.0, 1.0]);
        let e = Summary::of([1.0, 0.0, 1.0, 0.0, 0.0]);
        let d = welch(&c, &e).expect("diff");
        assert!(!d.significant && (d.diff + 0.2).abs() < 1e-12, "{d:?}");
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.95), Some(4.0));
        assert_eq!(percentile(&[7.0], 0.0), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
