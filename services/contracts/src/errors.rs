//! The `org.cabin.Error.*` names every cabin service replies with, and how a client reads a
//! failed call.
//!
//! Callers match on the error *name*; the message is for humans. The services build their
//! replies with `cabin_common::error::CabinError`, whose names are these.

use std::fmt;

/// The full D-Bus error names of the cabin contracts.
pub mod names {
    pub const INVALID_ARGUMENT: &str = "org.cabin.Error.InvalidArgument";
    pub const BUSY: &str = "org.cabin.Error.Busy";
    pub const CANCELLED: &str = "org.cabin.Error.Cancelled";
    pub const NOT_FOUND: &str = "org.cabin.Error.NotFound";
    pub const UNAVAILABLE: &str = "org.cabin.Error.Unavailable";
    pub const PERMISSION_DENIED: &str = "org.cabin.Error.PermissionDenied";
    pub const INTERNAL: &str = "org.cabin.Error.Internal";
    /// Every name above, for clients that validate a name they pass on.
    pub const ALL: [&str; 7] = [
        INVALID_ARGUMENT,
        BUSY,
        CANCELLED,
        NOT_FOUND,
        UNAVAILABLE,
        PERMISSION_DENIED,
        INTERNAL,
    ];
}

/// A failed call as a client reports it: the error's D-Bus name and a message.
///
/// A service that is not on the bus, a broken connection or a call that timed out all read as
/// `org.cabin.Error.Unavailable`, so a client handles "the other service is not there" once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    pub name: String,
    pub message: String,
}

impl CallError {
    pub fn new(name: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            message: message.into(),
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(names::UNAVAILABLE, message)
    }

    /// A call to `service` (in words: "the wallpaper service") that failed with `err`.
    pub fn from_call(service: &str, err: zbus::Error) -> Self {
        match err {
            zbus::Error::MethodError(name, message, _) => {
                let name = name.to_string();
                if is_missing_service(&name) {
                    Self::unavailable(format!("{service} is not running"))
                } else {
                    Self::new(name, message.unwrap_or_default())
                }
            }
            zbus::Error::FDO(e) => {
                let name = zbus::DBusError::name(e.as_ref()).to_string();
                if is_missing_service(&name) {
                    Self::unavailable(format!("{service} is not running"))
                } else {
                    Self::new(name, e.to_string())
                }
            }
            other => Self::unavailable(format!("cannot reach {service}: {other}")),
        }
    }

    /// A call to `service` that got no answer within `seconds`.
    pub fn timed_out(service: &str, seconds: u64) -> Self {
        Self::unavailable(format!("{service} did not answer within {seconds} s"))
    }

    /// Whether this is one of the cabin contracts' own error names.
    pub fn is_cabin_error(&self) -> bool {
        names::ALL.contains(&self.name.as_str())
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

impl std::error::Error for CallError {}

fn is_missing_service(name: &str) -> bool {
    matches!(
        name,
        "org.freedesktop.DBus.Error.ServiceUnknown"
            | "org.freedesktop.DBus.Error.NameHasNoOwner"
            | "org.freedesktop.DBus.Error.ServiceNotFound"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method_error(name: &'static str, message: &str) -> zbus::Error {
        let msg = zbus::Message::method_call("/", "Ping").build(&()).unwrap();
        zbus::Error::MethodError(
            zbus::names::OwnedErrorName::try_from(name).unwrap(),
            Some(message.into()),
            msg,
        )
    }

    #[test]
    fn a_cabin_error_keeps_its_name_and_message() {
        let e = CallError::from_call(
            "the wallpaper service",
            method_error(names::BUSY, "two pictures are queued"),
        );
        assert_eq!(e.name, names::BUSY);
        assert_eq!(e.message, "two pictures are queued");
        assert!(e.is_cabin_error());
    }

    #[test]
    fn a_missing_service_reads_as_unavailable() {
        let e = CallError::from_call(
            "the wallpaper service",
            method_error("org.freedesktop.DBus.Error.ServiceUnknown", "no such name"),
        );
        assert_eq!(e.name, names::UNAVAILABLE);
        assert_eq!(e.message, "the wallpaper service is not running");
        let e = CallError::timed_out("the companion", 20);
        assert_eq!(
            e.to_string(),
            "org.cabin.Error.Unavailable: the companion did not answer within 20 s"
        );
    }
}
