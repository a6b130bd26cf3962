//! The named D-Bus errors every cabin service replies with.
//!
//! Callers match on the error *name* (`org.cabin.Error.Busy`, ...); the message is for humans.
//! Library code returns its own error types and converts at the bus edge, so no library needs
//! to know about D-Bus to fail well.

/// `org.cabin.Error.*`: the error names of the cabin bus contract.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.cabin.Error")]
pub enum CabinError {
    /// A transport error from zbus itself (reported under its own `org.freedesktop.*` name).
    #[zbus(error)]
    ZBus(zbus::Error),
    /// An argument is malformed, out of range or of the wrong type.
    InvalidArgument(String),
    /// The service cannot take more work right now; try again later.
    Busy(String),
    /// The work was cancelled before it finished.
    Cancelled(String),
    /// The named object (image, persona, session, ...) does not exist.
    NotFound(String),
    /// A resource the call needs (model, network, vehicle source) is not available.
    Unavailable(String),
    /// The caller may not do this.
    PermissionDenied(String),
    /// A bug or an unexpected failure inside the service; logged with details.
    Internal(String),
}

impl CabinError {
    pub fn invalid_argument(msg: impl Into<String>) -> Self {
        Self::InvalidArgument(msg.into())
    }
    pub fn busy(msg: impl Into<String>) -> Self {
        Self::Busy(msg.into())
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::NotFound(msg.into())
    }
    pub fn unavailable(msg: impl Into<String>) -> Self {
        Self::Unavailable(msg.into())
    }
    /// Logs the details and hands the caller a short message.
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(%err, "{context}");
        Self::Internal(format!("{context}: {err}"))
    }
}

/// The full D-Bus error names, for clients and tests that match on them.
pub use cabin_contracts::errors::names;

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::DBusError;

    #[test]
    fn error_names_follow_the_contract() {
        let cases = [
            (CabinError::invalid_argument("x"), names::INVALID_ARGUMENT),
            (CabinError::busy("x"), names::BUSY),
            (CabinError::Cancelled("x".into()), names::CANCELLED),
            (CabinError::not_found("x"), names::NOT_FOUND),
            (CabinError::unavailable("x"), names::UNAVAILABLE),
            (
                CabinError::PermissionDenied("x".into()),
                names::PERMISSION_DENIED,
            ),
            (CabinError::Internal("x".into()), names::INTERNAL),
        ];
        for (err, name) in cases {
            assert_eq!(err.name().as_str(), name);
            assert_eq!(err.description(), Some("x"));
        }
    }
}
