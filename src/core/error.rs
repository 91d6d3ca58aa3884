//! Errors that say whose fault it is and whether trying again can help.

use thiserror::Error as ThisError;

/// What an external error says when a call ran out of time.
pub const TIMED_OUT: &str = "timed out";

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

/// The [`Error::External`] system of a cluster's own connections: a peer
/// process went away.
pub const CLUSTER: &str = "cluster";

impl Error {
    /// True if a peer process of the cluster went away.
    pub fn is_peer_gone(&self) -> bool {
        matches!(self, Error::External { system, .. } if *system == CLUSTER)
    }

    /// Wraps an I/O error with what was being done.
    ///
    /// A full disk says so in words, with what to do, since the OS text
    /// alone ("No space left on device") does not say which path or why it
    /// stops the job.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        let mut context = context.into();
        if source.kind() == std::io::ErrorKind::StorageFull {
            context.push_str(" (the disk is full: free space there or move the sink)");
        }
        Error::Io {
            context,
            cause: source,
        }
    }

    /// The same error with `what` after its message, keeping whose fault it is.
    pub fn with(self, what: &str) -> Error {
        match self {
            Error::Config(m) => Error::Config(format!("{m}; {what}")),
            Error::Input(m) => Error::Input(format!("{m}; {what}")),
            Error::Io { context, cause } => Error::Io {
                context: format!("{context} ({what})"),
                cause,
            },
            Error::External {
                system,
                message,
                retryable,
            } => Error::External {
                system,
                message: format!("{message}; {what}"),
                retryable,
            },
            Error::Internal(m) => Error::Internal(format!("{m}; {what}")),
        }
    }

    /// The same error again (an I/O cause keeps its kind and message):
    /// a fault seen by several workers keeps saying whose fault it is.
    pub fn duplicate(&self) -> Error {
        match self {
            Error::Config(m) => Error::Config(m.clone()),
            Error::Input(m) => Error::Input(m.clone()),
            Error::Io { context, cause } => Error::Io {
                context: context.clone(),
                cause: std::io::Error::new(cause.kind(), cause.to_string()),
            },
            Error::External {
                system,
                message,
                retryable,
            } => Error::External {
                system,
                message: message.clone(),
                retryable: *retryable,
            },
            Error::Internal(m) => Error::Internal(m.clone()),
        }
    }

    /// The process exit code for this error (sysexits): configuration 78,
    /// bad input 65, an external system 69, local I/O 74, a bug 70.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) => 78,
            Error::Input(_) => 65,
            Error::External { .. } => 69,
            Error::Io { .. } => 74,
            Error::Internal(_) => 70,
        }
    }

    /// True if the operation ran out of time (a store or broker that hangs).
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Io { cause, .. } => cause.kind() == std::io::ErrorKind::TimedOut,
            Error::External { message, .. } => message.contains(TIMED_OUT),
            _ => false,
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
    std::sync::Mutex<Option<Error>>,
    std::sync::atomic::AtomicBool,
);

impl FaultSlot {
    /// Records the first fault (later ones are only logged by their owners).
    pub fn set(&self, err: &Error) {
        if let Ok(mut slot) = self.0.lock() {
            if slot.is_none() {
                tracing::error!(error = %err, "fatal fault");
                *slot = Some(err.duplicate());
                self.1.store(true, std::sync::atomic::Ordering::Release);
            }
        }
    }

    /// The fault, if one was recorded: an error of the same kind and words.
    pub fn get(&self) -> Option<Error> {
        if !self.1.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        self.0
            .lock()
            .ok()
            .and_then(|s| s.as_ref().map(Error::duplicate))
    }
}
