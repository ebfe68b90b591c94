//! Exponential backoff with full jitter, bounded, honouring what the destination
//! asked for.

use std::time::Duration;

use xxhash_rust::xxh3::xxh3_64;

/// Backoff bounds.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    /// How long to wait before attempt `attempt` (1 = the first retry): a random
    /// point in `[ceiling/2, ceiling]`, where the ceiling doubles from `initial` up
    /// to `max`; never less than what the destination asked for.
    pub fn delay(&self, attempt: u32, asked: Option<Duration>) -> Duration {
        let ceiling = self
            .initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max);
        let half = ceiling / 2;
        let jitter = half.mul_f64(unit_random(attempt));
        let delay = half + jitter;
        match asked {
            Some(asked) => delay.max(asked.min(Duration::from_secs(300))),
            None => delay,
        }
    }
}

/// A number in [0, 1) that differs between calls; good enough to spread retries.
fn unit_random(salt: u32) -> f64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut bytes = now.to_le_bytes().to_vec();
    bytes.extend_from_slice(&salt.to_le_bytes());
    bytes.extend_from_slice(&std::process::id().to_le_bytes());
    (xxh3_64(&bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_maximum_and_respect_the_destination() {
        let backoff = Backoff::default();
        let first = backoff.delay(1, None);
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        let late = backoff.delay(30, None);
        assert!(late >= Duration::from_millis(2500) && late <= Duration::from_secs(5));
        let asked = backoff.delay(1, Some(Duration::from_secs(3)));
        assert!(asked >= Duration::from_secs(3));
    }
}
