//! Fault injection for ARM requests: throttling, server errors, latency, dropped
//! connections, decided by a seeded generator so a failing test can be replayed.

/// Probabilities (0.0 to 1.0) of each fault per ARM request, plus a fixed latency.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Answer 429 `TooManyRequests` with `Retry-After: 1`.
    pub throttle: f64,
    /// Answer 500 or 503 with an ARM error body.
    pub server_errors: f64,
    /// Added to every ARM request before it is handled.
    pub latency_ms: u64,
    /// Close the connection without any response.
    pub resets: f64,
    /// Seed of the generator that decides the faults.
    pub seed: u64,
    /// Share of Spot container groups evicted once their containers run.
    pub evict: f64,
}

/// What to do with one request, decided before the request has any effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    Throttle,
    ServerError(u16),
    Reset,
}

/// Faults plus the state of their generator (SplitMix64: tiny and reproducible).
pub struct FaultState {
    pub faults: Faults,
    rng: u64,
}

impl FaultState {
    pub fn new(faults: Faults) -> Self {
        let rng = faults.seed;
        FaultState { faults, rng }
    }

    fn next_f64(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Draws the fault for one request. Each kind gets its own draw, in a fixed order,
    /// so the sequence depends only on the seed.
    pub fn decide(&mut self) -> Fault {
        let f = self.faults.clone();
        if f.resets > 0.0 && self.next_f64() < f.resets {
            return Fault::Reset;
        }
        if f.throttle > 0.0 && self.next_f64() < f.throttle {
            return Fault::Throttle;
        }
        if f.server_errors > 0.0 && self.next_f64() < f.server_errors {
            let code = if self.next_f64() < 0.5 { 500 } else { 503 };
            return Fault::ServerError(code);
        }
        Fault::None
    }

    /// Whether a new Spot container group will be evicted (a draw of its own, so
    /// that evictions do not shift the ARM faults' sequence when `evict` is 0).
    pub fn decide_eviction(&mut self) -> bool {
        let evict = self.faults.evict;
        evict > 0.0 && self.next_f64() < evict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_faults() {
        let faults = Faults {
            throttle: 0.3,
            server_errors: 0.3,
            resets: 0.1,
            seed: 42,
            ..Faults::default()
        };
        let mut a = FaultState::new(faults.clone());
        let mut b = FaultState::new(faults);
        let xs: Vec<Fault> = (0..50).map(|_| a.decide()).collect();
        let ys: Vec<Fault> = (0..50).map(|_| b.decide()).collect();
        assert_eq!(xs, ys);
        assert!(xs.contains(&Fault::None));
        assert!(xs.contains(&Fault::Throttle));
    }

    #[test]
    fn zero_means_never() {
        let mut s = FaultState::new(Faults::default());
        assert!((0..100).all(|_| s.decide() == Fault::None));
    }
}
