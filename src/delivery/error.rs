//! Errors of the delivery subsystem.

/// Why a worker or a transport could not be created.
///
/// Delivery itself never returns errors: failures while sending are logged and
/// counted in [`DeliveryStats`](super::DeliveryStats).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// A configuration value is out of range; the text names the setting and the rule.
    #[error("invalid delivery configuration: {0}")]
    Config(&'static str),
    /// The operating system refused to start the worker thread.
    #[error("could not start the worker thread")]
    Spawn(#[source] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_cause() {
        let e = DeliveryError::Config("queue_capacity must be at least 1");
        assert_eq!(
            e.to_string(),
            "invalid delivery configuration: queue_capacity must be at least 1"
        );
        let e = DeliveryError::Spawn(std::io::Error::other("no threads"));
        assert!(std::error::Error::source(&e).is_some());
    }
}
