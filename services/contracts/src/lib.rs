//! The cabin bus contracts in one place.
//!
//! Each module is one service's contract: its well-known name, object path and interface
//! names, the committed introspection XML (`dbus/*.xml`, which the service's bus test compares
//! with what the running service exports), and typed zbus proxies for every interface. Every
//! client of a cabin service (voice, the companion's actions, the feedback CLI, cabinctl, the
//! simulator's cockpit, the tests) goes through these proxies, so a change to a contract is a
//! change in one file that the compiler then walks through every caller.
//!
//! [`errors`] holds the `org.cabin.Error.*` names and the reading of a failed call that every
//! client shares.

pub mod companion;
pub mod errors;
pub mod feedback;
pub mod vehicle;
pub mod voice;
pub mod wallpaper;

pub use errors::CallError;

#[cfg(test)]
mod tests {
    #[test]
    fn every_contract_parses_and_declares_its_interfaces() {
        let contracts = [
            (
                crate::wallpaper::INTROSPECTION_XML,
                &[crate::wallpaper::INTERFACE, crate::wallpaper::JOB_INTERFACE][..],
            ),
            (
                crate::companion::INTROSPECTION_XML,
                &[
                    crate::companion::INTERFACE,
                    crate::companion::SESSION_INTERFACE,
                ][..],
            ),
            (
                crate::feedback::INTROSPECTION_XML,
                &[crate::feedback::INTERFACE][..],
            ),
            (
                crate::voice::INTROSPECTION_XML,
                &[crate::voice::INTERFACE][..],
            ),
            (
                crate::vehicle::INTROSPECTION_XML,
                &[crate::vehicle::INTERFACE][..],
            ),
        ];
        for (xml, interfaces) in contracts {
            for interface in interfaces {
                let members = cabin_testbus::interface_members(xml, interface);
                assert!(!members.is_empty(), "{interface} declares nothing");
            }
        }
    }
}
