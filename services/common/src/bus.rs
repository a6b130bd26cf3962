//! Connecting to a message bus, and serving objects before taking a well-known name.
//!
//! Ordering matters for bus activation: the daemon queues a call for an activatable name and
//! delivers it as soon as the name is owned, so every object must already be served by then.
//! zbus's connection builder requests names only after serving what was handed to
//! `serve_at`, which is why services build their whole object tree into one builder here.

use std::fmt;
use std::str::FromStr;

use zbus::connection::Builder;

/// `--bus system|session|ADDRESS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusChoice {
    System,
    Session,
    Address(String),
}

impl FromStr for BusChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "system" => Ok(Self::System),
            "session" => Ok(Self::Session),
            other => {
                // Validate now so a typo fails at argument parsing, not at connect time.
                zbus::Address::from_str(other).map_err(|e| {
                    format!("`{other}` is neither system, session nor a D-Bus address: {e}")
                })?;
                Ok(Self::Address(other.to_string()))
            }
        }
    }
}

impl fmt::Display for BusChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::System => f.write_str("system"),
            Self::Session => f.write_str("session"),
            Self::Address(a) => f.write_str(a),
        }
    }
}

impl BusChoice {
    /// A connection builder for this bus; add `serve_at`s, then [`BusChoice::serve`] or `build`.
    pub fn builder(&self) -> Builder<'static> {
        match self {
            Self::System => Builder::system(),
            Self::Session => Builder::session(),
            Self::Address(a) => Builder::address(a.as_str()),
        }
    }

    /// A plain client connection.
    pub async fn connect(&self) -> zbus::Result<zbus::Connection> {
        self.builder().build().await
    }
}

/// Takes `name` on a connection that already serves its objects and has restored its state,
/// so the first caller after the name appears sees the service as it was. Fails if another
/// process owns the name, so two copies never split the calls.
pub async fn claim_name(conn: &zbus::Connection, name: &'static str) -> zbus::Result<()> {
    use zbus::fdo::{RequestNameFlags, RequestNameReply};
    match conn
        .request_name_with_flags(name, RequestNameFlags::DO_NOT_QUEUE)
        .await?
    {
        RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner => Ok(()),
        RequestNameReply::Exists | RequestNameReply::InQueue => Err(zbus::Error::NameTaken),
    }
}

/// Finishes a service's builder: objects are served first, then `name` is requested.
/// Fails if another process already owns the name, so two copies never split the calls.
pub async fn serve(
    builder: Builder<'static>,
    name: &'static str,
) -> zbus::Result<zbus::Connection> {
    builder.name(name).build().await
}
