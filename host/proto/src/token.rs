//! Stream positions and the names that key them on the wire.

use std::fmt;

/// A position in a stream: rows are ordered by token and several rows may share one.
///
/// Synapse parses tokens with Python `int()`; Streamhost accepts the full `i64` range (backfill
/// tokens can be negative on the wire) and rejects anything larger.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token(pub i64);

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A name that is one space-delimited field on the wire was empty or held a space or newline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: must be non-empty and contain no space, tab or newline")]
pub struct NameError {
    /// What kind of name was being built (`stream` or `instance`).
    pub kind: &'static str,
    /// The rejected value.
    pub value: String,
}

/// Names the decoder keeps per thread for reuse. A reader sees the same few stream and
/// instance names on every line; sharing them saves two allocations per decoded row.
/// Bounded, so hostile input cannot grow it.
const RECENT_NAMES: usize = 16;

thread_local! {
    static RECENT: std::cell::RefCell<(usize, [Option<std::sync::Arc<str>>; RECENT_NAMES])> =
        const { std::cell::RefCell::new((0, [const { None }; RECENT_NAMES])) };
}

/// The shared text for `value`: a recently decoded equal name, or a new one remembered in
/// place of the oldest.
fn intern(value: &str) -> std::sync::Arc<str> {
    RECENT.with(|recent| {
        let mut recent = recent.borrow_mut();
        let (next, names) = &mut *recent;
        if let Some(found) = names.iter().flatten().find(|name| &***name == value) {
            return found.clone();
        }
        let name: std::sync::Arc<str> = value.into();
        names[*next] = Some(name.clone());
        *next = (*next + 1) % RECENT_NAMES;
        name
    })
}

macro_rules! wire_name {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        ///
        /// Shared text: cloning is a reference-count increment, so per-row copies are free.
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(std::sync::Arc<str>);

        impl $name {
            /// Checks that `value` can travel as one space-delimited field.
            pub fn new(value: impl Into<String>) -> Result<Self, NameError> {
                let value = value.into();
                if value.is_empty() || value.contains([' ', '\t', '\n', '\r']) {
                    return Err(NameError { kind: $kind, value });
                }
                Ok(Self(value.into()))
            }

            /// Wraps a field exactly as decoded from a line; Synapse accepts any text without a
            /// space there (even an empty one), and so does the decoder. Recently seen names
            /// are shared rather than allocated again (see [`intern`]).
            pub(crate) fn from_wire(value: &str) -> Self {
                Self(intern(value))
            }

            /// The name as it appears on the wire.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }
    };
}

wire_name!(
    /// The name of a stream (`events`, `receipts`, ...).
    StreamName,
    "stream"
);
wire_name!(
    /// The name of the process that wrote a row (`master` for the writer by default).
    InstanceName,
    "instance"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_names_share_their_text_and_stay_bounded() {
        let a = StreamName::from_wire("events");
        let b = StreamName::from_wire("events");
        assert!(std::sync::Arc::ptr_eq(&a.0, &b.0));
        for n in 0..100 {
            assert_eq!(
                InstanceName::from_wire(&format!("w{n}")).as_str(),
                format!("w{n}")
            );
        }
        RECENT.with(|recent| assert_eq!(recent.borrow().1.iter().flatten().count(), RECENT_NAMES));
        assert_eq!(StreamName::from_wire("").as_str(), "");
    }
}
