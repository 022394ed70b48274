//! Exponential backoff with full jitter, honouring Retry-After up to a cap.

use std::time::Duration;

/// Delay before retry number `retry` (1-based): uniform in
/// `[0, min(max, base * 2^(retry-1))]` ("full jitter"). A server's
/// Retry-After, when given, is used instead, capped at `retry_after_cap`.
/// Returns None when the server asks for a wait longer than the cap: better
/// to move on to another target than to wait.
pub fn delay(
    retry: u32,
    base: Duration,
    max: Duration,
    retry_after: Option<Duration>,
    retry_after_cap: Duration,
    unit: f64,
) -> Option<Duration> {
    if let Some(ra) = retry_after {
        return (ra <= retry_after_cap).then_some(ra);
    }
    let exp = base.saturating_mul(
        1u32.checked_shl(retry.saturating_sub(1).min(20))
            .unwrap_or(u32::MAX),
    );
    let ceiling = exp.min(max);
    Some(ceiling.mul_f64(unit.clamp(0.0, 1.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Duration = Duration::from_millis(100);
    const M: Duration = Duration::from_millis(1000);
    const CAP: Duration = Duration::from_secs(5);

    #[test]
    fn full_jitter_bounds_grow_and_cap() {
        assert_eq!(delay(1, B, M, None, CAP, 1.0), Some(B));
        assert_eq!(delay(2, B, M, None, CAP, 1.0), Some(B * 2));
        assert_eq!(delay(3, B, M, None, CAP, 1.0), Some(B * 4));
        assert_eq!(delay(10, B, M, None, CAP, 1.0), Some(M));
        assert_eq!(delay(40, B, M, None, CAP, 1.0), Some(M));
        assert_eq!(delay(3, B, M, None, CAP, 0.0), Some(Duration::ZERO));
        assert_eq!(delay(3, B, M, None, CAP, 0.5), Some(B * 2));
    }

    #[test]
    fn retry_after_wins_up_to_cap() {
        assert_eq!(
            delay(1, B, M, Some(Duration::from_secs(2)), CAP, 0.3),
            Some(Duration::from_secs(2))
        );
        assert_eq!(delay(1, B, M, Some(Duration::from_secs(30)), CAP, 0.3), None);
    }
}
