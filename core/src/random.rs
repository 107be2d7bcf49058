//! Secure random bytes, as a capability.
//!
//! ```
//! weft::run(|env| {
//!     let mut key = [0u8; 32];
//!     env.secure_random().fill(&mut key)?;
//!     assert_ne!(key, [0u8; 32]);
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::sync::Arc;

use crate::error::Result;

/// What a backend provides for randomness.
pub trait RandomBackend: Send + Sync + 'static {
    /// Fills `buf` with random bytes.
    fn fill(&self, buf: &mut [u8]) -> Result<()>;
}

/// The capability to get random bytes: from the OS's secure generator on
/// real backends, and from a seeded (deterministic) generator under the
/// mock.
#[derive(Clone)]
pub struct SecureRandom {
    backend: Arc<dyn RandomBackend>,
}

impl std::fmt::Debug for SecureRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecureRandom")
    }
}

impl SecureRandom {
    /// A `SecureRandom` backed by `backend` (backends use this).
    pub fn new(backend: Arc<dyn RandomBackend>) -> SecureRandom {
        SecureRandom { backend }
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&self, buf: &mut [u8]) -> Result<()> {
        self.backend.fill(buf)
    }

    /// A random `u64`.
    pub fn u64(&self) -> Result<u64> {
        let mut b = [0u8; 8];
        self.fill(&mut b)?;
        Ok(u64::from_ne_bytes(b))
    }
}

/// A deterministic generator (SplitMix64) for the mock backend: the same
/// seed gives the same bytes on every run.
pub struct SeededRandom {
    state: std::sync::Mutex<u64>,
}

impl SeededRandom {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> SeededRandom {
        SeededRandom {
            state: std::sync::Mutex::new(seed),
        }
    }

    fn next(&self) -> u64 {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl RandomBackend for SeededRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<()> {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}
