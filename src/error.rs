use std::path::PathBuf;
use std::time::Duration;

/// The one error type of splitkit.
///
/// Evaluation never fails with an error (it answers `control` with a label instead); errors come
/// only from the edges: building a client, loading definitions, waiting for readiness, and
/// recording events.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration option has a value that cannot be used.
    #[error("invalid configuration: {option}: {message}")]
    Config {
        /// The option, as named by its builder method.
        option: &'static str,
        /// What is wrong with the value.
        message: String,
    },
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A document (file or HTTP body) could not be parsed.
    #[error("cannot parse {origin}{}: {message}", line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    Parse {
        /// Where the document came from: a file path or a URL.
        origin: String,
        /// The line of the problem, when known.
        line: Option<usize>,
        /// What is wrong, naming the field or value.
        message: String,
    },
    /// A flag definition has a field whose value cannot be used.
    #[error("flag '{flag}': field '{field}': {message}")]
    InvalidDefinition {
        /// The flag (or rule-based segment) name.
        flag: String,
        /// The field, as a path inside the definition.
        field: String,
        /// What is wrong with the value.
        message: String,
    },
    /// The client did not become ready in time, or its first load failed.
    ///
    /// The message gives the time waited, rounded for reading (`not ready after 3.0 s: ...`),
    /// then the reason.
    #[error("not ready after {}: {reason}", crate::text::duration(*waited))]
    NotReady {
        /// How long the call waited.
        waited: Duration,
        /// Why the client is not ready yet (last error seen, or still loading); it does not
        /// repeat the time waited.
        reason: String,
    },
    /// A call broke one of the input rules (an event to `track`, for instance).
    #[error("{0}")]
    InvalidInput(String),
    /// The client was destroyed.
    #[error("the client has been destroyed")]
    Destroyed,
}

impl From<crate::delivery::DeliveryError> for Error {
    fn from(e: crate::delivery::DeliveryError) -> Self {
        match e {
            crate::delivery::DeliveryError::Config(message) => Error::Config {
                option: "delivery",
                message: message.to_string(),
            },
            crate::delivery::DeliveryError::Spawn(source) => Error::Io {
                path: PathBuf::from("<splitkit worker thread>"),
                source,
            },
        }
    }
}

/// Shorthand for results with splitkit's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_problem() {
        let e = Error::InvalidDefinition {
            flag: "checkout".into(),
            field: "conditions[0].partitions[1].size".into(),
            message: "must be between 0 and 100, got 140".into(),
        };
        assert_eq!(
            e.to_string(),
            "flag 'checkout': field 'conditions[0].partitions[1].size': must be between 0 and 100, got 140"
        );
        let p = Error::Parse {
            origin: "flags.yaml".into(),
            line: Some(3),
            message: "expected a map".into(),
        };
        assert_eq!(
            p.to_string(),
            "cannot parse flags.yaml at line 3: expected a map"
        );
    }

    #[test]
    fn not_ready_says_the_time_waited_once_and_readably() {
        let e = Error::NotReady {
            waited: Duration::from_micros(3_000_100),
            reason: "still loading feature flags; no answer from the server yet".into(),
        };
        assert_eq!(
            e.to_string(),
            "not ready after 3.0 s: still loading feature flags; no answer from the server yet"
        );
        let quick = Error::NotReady {
            waited: Duration::from_nanos(819),
            reason: "synchronization failed: HTTP 401".into(),
        };
        assert_eq!(
            quick.to_string(),
            "not ready after 0 ms: synchronization failed: HTTP 401"
        );
    }

    #[test]
    fn error_stays_small() {
        assert!(std::mem::size_of::<Error>() <= 80);
    }
}
