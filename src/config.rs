//! Client configuration: every option with its documented default, validated at `build()`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Error;
use crate::validation::sanitize_flag_sets;

/// The SDK key that selects localhost mode.
pub const LOCALHOST: &str = "localhost";
/// Default of [`crate::ClientBuilder::shutdown_timeout`]: 5 seconds.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Shortest accepted [`crate::ClientBuilder::localhost_refresh_rate`]: 10 milliseconds.
pub const MIN_LOCALHOST_REFRESH_RATE: Duration = Duration::from_millis(10);
/// Default localhost flags file, relative to the home directory: `.split`.
pub const DEFAULT_SPLIT_FILE: &str = ".split";

/// A validated client configuration. Built by [`crate::ClientBuilder`]; read with the getters.
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) sdk_key: String,
    pub(crate) split_file: PathBuf,
    pub(crate) segment_directory: Option<PathBuf>,
    pub(crate) localhost_refresh_rate: Option<Duration>,
    pub(crate) flag_sets_filter: Vec<String>,
    pub(crate) shutdown_timeout: Duration,
}

impl Config {
    /// True in localhost mode (SDK key `"localhost"`).
    pub fn is_localhost(&self) -> bool {
        self.sdk_key == LOCALHOST
    }

    /// The localhost flags file.
    pub fn split_file(&self) -> &Path {
        &self.split_file
    }

    /// The localhost segment directory, if any.
    pub fn segment_directory(&self) -> Option<&Path> {
        self.segment_directory.as_deref()
    }

    /// How often the localhost file is checked for changes; `None` when reloading is off.
    pub fn localhost_refresh_rate(&self) -> Option<Duration> {
        self.localhost_refresh_rate
    }

    /// The flag sets the client is restricted to (sanitized, sorted); empty for no filter.
    pub fn flag_sets_filter(&self) -> &[String] {
        &self.flag_sets_filter
    }

    /// How long dropping the last client handle waits for background work to finish.
    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout
    }
}

/// The options as given to the builder, before validation.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    pub(crate) split_file: Option<PathBuf>,
    pub(crate) segment_directory: Option<PathBuf>,
    pub(crate) localhost_refresh_rate: Option<Duration>,
    pub(crate) flag_sets_filter: Option<Vec<String>>,
    pub(crate) shutdown_timeout: Option<Duration>,
}

impl Options {
    pub(crate) fn validate(self, sdk_key: &str, has_snapshot: bool) -> Result<Config, Error> {
        let sdk_key = sdk_key.trim();
        if sdk_key.is_empty() {
            return Err(Error::Config {
                option: "sdk_key",
                message: "must be a non-empty string (use \"localhost\" for localhost mode)".into(),
            });
        }
        if sdk_key != LOCALHOST {
            return Err(Error::Config {
                option: "sdk_key",
                message: "this version of splitkit runs in localhost mode only: use the SDK key \"localhost\" (remote synchronization is not part of this release)".into(),
            });
        }
        if let Some(rate) = self.localhost_refresh_rate
            && rate < MIN_LOCALHOST_REFRESH_RATE
        {
            return Err(Error::Config {
                option: "localhost_refresh_rate",
                message: format!("must be at least {MIN_LOCALHOST_REFRESH_RATE:?}, got {rate:?}"),
            });
        }
        let split_file = match self.split_file {
            Some(p) => p,
            None if has_snapshot => PathBuf::new(),
            None => match std::env::var_os("HOME") {
                Some(home) => PathBuf::from(home).join(DEFAULT_SPLIT_FILE),
                None => {
                    return Err(Error::Config {
                        option: "split_file",
                        message: "not set, and there is no HOME directory for the default ~/.split"
                            .into(),
                    });
                }
            },
        };
        let flag_sets_filter = match self.flag_sets_filter {
            None => Vec::new(),
            Some(sets) => {
                let cleaned =
                    sanitize_flag_sets("flag_sets_filter", &sets, &mut |w| log::warn!("{w}"));
                if cleaned.is_empty() && !sets.is_empty() {
                    return Err(Error::Config {
                        option: "flag_sets_filter",
                        message: format!("no valid flag set name in {sets:?}"),
                    });
                }
                cleaned
            }
        };
        Ok(Config {
            sdk_key: sdk_key.to_string(),
            split_file,
            segment_directory: self.segment_directory,
            localhost_refresh_rate: self.localhost_refresh_rate,
            flag_sets_filter,
            shutdown_timeout: self.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
        })
    }
}
