//! Errors that say whose fault it is and whether trying again can help.

use thiserror::Error as ThisError;

/// Everything that can stop the pipeline.
#[derive(Debug, ThisError)]
pub enum Error {
    /// The job file, a flag or an environment override is wrong: fix it and rerun.
    #[error("configuration error: {0}")]
    Config(String),
    /// Input data (a catalog, a file) is unusable as a whole; single bad
    /// records never end up here, they are dead-lettered instead.
    #[error("input error: {0}")]
    Input(String),
    /// A local file or socket failed; often transient.
    #[error("{context}: {cause}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error (in the message already, so not a separate `source`
        /// that error reports would print twice).
        cause: std::io::Error,
    },
    /// An external system (broker, object store) refused or failed.
    #[error("{system}: {message}")]
    External {
        /// Which system.
        system: &'static str,
        /// What it said.
        message: String,
        /// True if retrying later can succeed.
        retryable: bool,
    },
    /// A bug: an invariant of the pipeline itself was broken.
    #[error("internal error (a bug): {0}")]
    Internal(String),
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            cause: source,
        }
    }

    /// True if the same operation may succeed when retried.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Io { cause: source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
            ),
            Error::External { retryable, .. } => *retryable,
            _ => false,
        }
    }
}

/// Result with the pipeline's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where operators, which cannot return errors, leave the first fatal one
/// for the driver loop to pick up and stop on.
#[derive(Debug, Default)]
pub struct FaultSlot(
    std::sync::Mutex<Option<String>>,
    std::sync::atomic::AtomicBool,
);

impl FaultSlot {
    /// Records `err` unless an earlier fault is already recorded.
    pub fn set(&self, err: &Error) {
        if let Ok(mut slot) = self.0.lock() {
            if slot.is_none() {
                tracing::error!(error = %err, "fatal fault");
                *slot = Some(err.to_string());
                self.1.store(true, std::sync::atomic::Ordering::Release);
            }
        }
    }

    /// The recorded fault, if any.
    pub fn get(&self) -> Option<String> {
        if !self.1.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        self.0.lock().ok().and_then(|s| s.clone())
    }
}
