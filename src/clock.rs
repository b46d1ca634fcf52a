//! A worker thread's millisecond clock, and the rounding that lets the
//! timers of one worker fall due together.
//!
//! Each thread counts milliseconds from an epoch of its own: 8 bytes where
//! an `Instant` takes 16, for the clocks every socket keeps. Far deadlines
//! are rounded up to a grain of about a 64th of their distance, a quarter
//! of a second at most ([`coalesced`]): the heartbeats of
//! one worker's idle sessions that fall due within one grain fire at one
//! wake-up of the worker, not at one each. A timer comes up to that much
//! late, never early.

use tokio::time::{Duration, Instant};

thread_local! {
    /// Where this thread's milliseconds count from.
    static EPOCH: Instant = Instant::now();
}

/// Milliseconds since this thread's epoch, rounded down.
pub(crate) fn now() -> u64 {
    EPOCH.with(|epoch| millis(epoch.elapsed()))
}

/// A duration in whole milliseconds.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The instant [`now`] reaches `at` on this thread, or [`FAR`] after the
/// thread's epoch if that is sooner: a heartbeat of `Duration::MAX` means
/// none, not a panic on adding it to an `Instant`.
pub(crate) fn instant(at: u64) -> Instant {
    EPOCH.with(|epoch| *epoch + Duration::from_millis(at).min(FAR))
}

/// Further than any timer needs to look: 30 years.
const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// [`FAR`] in milliseconds: a deadline at or past it is never.
pub(crate) const FAR_MILLIS: u64 = FAR.as_secs() * 1000;

/// The largest grain, in milliseconds: a heartbeat of 25 s may come up to
/// a quarter of a second late.
const MAX_GRAIN: u64 = 256;

/// The grain for a timer `distance` milliseconds away: about a 64th of it,
/// a power of two, at most [`MAX_GRAIN`]; 1 (no rounding) below 128 ms.
fn grain(distance: u64) -> u64 {
    let grain = (distance / 64).min(MAX_GRAIN);
    if grain < 2 {
        1
    } else {
        1 << grain.ilog2()
    }
}

/// `ms`, rounded up to a multiple of `grain` (saturating).
fn round_up(ms: u64, grain: u64) -> u64 {
    ms.div_ceil(grain).saturating_mul(grain)
}

/// `at`, rounded up to a multiple of the grain for its distance from `now`.
pub(crate) fn coalesced(at: u64, now: u64) -> u64 {
    round_up(at, grain(at.saturating_sub(now)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn far_deadlines_are_rounded_up_to_a_grain_near_ones_are_kept() {
        for now in [0, 7, 1_000, 123_457] {
            for distance in [0, 1, 63, 64, 127, 128, 1_000, 10_000, 25_000, 600_000] {
                let at = now + distance;
                let rounded = coalesced(at, now);
                assert!(rounded >= at, "{at} moved earlier, to {rounded}");
                let bound = (distance / 64).clamp(1, MAX_GRAIN);
                assert!(rounded - at < bound, "{at} moved {} ms later (distance {distance})", rounded - at);
            }
        }
        // Within 128 ms, every millisecond counts.
        assert_eq!(coalesced(1_127, 1_000), 1_127);
        // A heartbeat 25 s away: deadlines in one 256 ms grain meet.
        assert_eq!(coalesced(25_089, 0), 25_344);
        assert_eq!(coalesced(25_344, 0), 25_344);
        assert_eq!(coalesced(25_345, 0), 25_600);
        // Past deadlines are kept.
        assert_eq!(coalesced(900, 1_000), 900);
    }

    #[test]
    fn extreme_delays_neither_panic_nor_spin() {
        // None: the deadline is far away, and within an `Instant`.
        assert!(instant(u64::MAX) > Instant::now() + Duration::from_secs(10 * 365 * 24 * 3600));
        assert_eq!(instant(u64::MAX), instant(millis(FAR)));
        assert_eq!(coalesced(u64::MAX, 0), u64::MAX);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }
}
