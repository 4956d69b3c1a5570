//! Room passwords: hashed with Argon2id (RustCrypto's `argon2`, at its
//! defaults, OWASP's minimum) into a PHC string that the backend keeps,
//! and checked against it by the same crate, whose comparison takes the
//! same time however much of the hash matches. A hash takes tens of
//! milliseconds of CPU by design, so it runs on the blocking pool, as
//! many at once as there are cores, with a bounded queue behind them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use tokio::sync::Semaphore;
use tracing::error;

use crate::http::error::ApiError;

/// Longest password, in bytes: enough for a passphrase, and a bound on
/// what a hash reads.
pub const PASSWORD_MAX: usize = 256;

/// Hashes and checks waiting for a core, at most; past it, 503.
const WAITING_MAX: usize = 64;

/// Where the hashing runs, and how much may wait for it.
pub struct Passwords {
    cores: Arc<Semaphore>,
    waiting: AtomicUsize,
}

impl Default for Passwords {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            cores: Arc::new(Semaphore::new(cores)),
            waiting: AtomicUsize::new(0),
        }
    }
}

/// Counts a hash or check waiting for a core until it has one.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Passwords {
    /// The PHC string of `password`, with a fresh salt.
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        self.on_a_core(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|hash| hash.to_string())
        })
        .await?
        .map_err(|cause| {
            error!(%cause, "a room password could not be hashed");
            ApiError::Internal
        })
    }

    /// Whether `password` is the one `hash` was made from. No password is
    /// never it.
    pub async fn matches(&self, password: Option<String>, hash: String) -> Result<bool, ApiError> {
        let Some(password) = password else {
            return Ok(false);
        };
        self.on_a_core(move || {
            PasswordHash::new(&hash).is_ok_and(|hash| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
            })
        })
        .await
    }

    async fn on_a_core<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= WAITING_MAX {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(ApiError::ServerBusy(
                "too many room passwords are being checked at once; retry later",
            ));
        }
        let waiting = Waiting(&self.waiting);
        // Never closed.
        let core = Arc::clone(&self.cores)
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Internal)?;
        drop(waiting);
        // The core is the task's until the hash is done, even if the
        // request that asked for it is dropped meanwhile.
        tokio::task::spawn_blocking(move || {
            let answer = work();
            drop(core);
            answer
        })
        .await
        .map_err(|cause| {
            error!(%cause, "a room password's task failed");
            ApiError::Internal
        })
    }
}
