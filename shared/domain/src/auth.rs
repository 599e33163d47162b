//! Who may do what: the scopes of API keys and tokens, and which scope each kind of request
//! needs. Scopes are ordered: `admin` grants `ingest`, which grants `read`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A permission level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read endpoints when reads are protected.
    Read,
    /// Start, sync and cancel ingestions.
    Ingest,
    /// Everything, including schedules and catalog changes.
    Admin,
}

impl Scope {
    /// Every scope, weakest first.
    pub const ALL: [Self; 3] = [Self::Read, Self::Ingest, Self::Admin];

    /// The scope's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Ingest => "ingest",
            Self::Admin => "admin",
        }
    }

    /// Whether holding `self` allows what `needed` allows.
    pub fn grants(self, needed: Self) -> bool {
        self >= needed
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope name that is not `read`, `ingest` or `admin`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope '{0}': expected read, ingest or admin")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "read" => Ok(Self::Read),
            "ingest" => Ok(Self::Ingest),
            "admin" => Ok(Self::Admin),
            _ => Err(UnknownScope(s.to_owned())),
        }
    }
}

/// Parses a list of scopes separated by spaces or commas, sorted and without duplicates.
///
/// # Errors
/// The first unknown name.
pub fn parse_scopes(list: &str) -> Result<Vec<Scope>, UnknownScope> {
    let mut scopes = list
        .split([' ', ','])
        .filter(|s| !s.trim().is_empty())
        .map(Scope::from_str)
        .collect::<Result<Vec<_>, _>>()?;
    scopes.sort();
    scopes.dedup();
    Ok(scopes)
}

/// Space-separated scope names (the stored and displayed form).
pub fn format_scopes(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether any of `held` grants `needed`.
pub fn allows(held: &[Scope], needed: Scope) -> bool {
    held.iter().any(|s| s.grants(needed))
}

/// Who may call a route: declared with each route (the API's route table), turned into the
/// scope a request needs by [`Access::needed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Never needs credentials (health, readiness, metrics, OIDC discovery).
    Public,
    /// Checks credentials of its own instead of a key (`/credentials/basic`).
    OwnCredentials,
    /// A read: public unless reads are protected, then scope `read`.
    Read,
    /// About the caller (`/me`): always scope `read`.
    Caller,
    /// Starts, syncs or cancels ingestions: scope `ingest`.
    Ingest,
    /// Everything else that writes (schedules, the catalog): scope `admin`.
    Admin,
}

impl Access {
    /// The scope a request needs; `None` when it is public.
    #[must_use]
    pub fn needed(self, protect_reads: bool) -> Option<Scope> {
        match self {
            Self::Public | Self::OwnCredentials => None,
            Self::Read => protect_reads.then_some(Scope::Read),
            Self::Caller => Some(Scope::Read),
            Self::Ingest => Some(Scope::Ingest),
            Self::Admin => Some(Scope::Admin),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_ordered() {
        assert!(Scope::Admin.grants(Scope::Ingest));
        assert!(Scope::Admin.grants(Scope::Read));
        assert!(Scope::Ingest.grants(Scope::Read));
        assert!(!Scope::Ingest.grants(Scope::Admin));
        assert!(!Scope::Read.grants(Scope::Ingest));
        assert!(allows(&[Scope::Read, Scope::Ingest], Scope::Ingest));
        assert!(!allows(&[], Scope::Read));
    }

    #[test]
    fn scope_lists_parse_and_format() {
        assert_eq!(
            parse_scopes("ingest, read ingest").expect("valid"),
            vec![Scope::Read, Scope::Ingest]
        );
        assert_eq!(format_scopes(&[Scope::Read, Scope::Admin]), "read admin");
        let err = parse_scopes("read write").expect_err("write is no scope");
        assert!(err.to_string().contains("'write'"), "{err}");
    }

    #[test]
    fn access_gives_the_documented_scope() {
        assert_eq!(Access::Read.needed(false), None);
        assert_eq!(Access::Read.needed(true), Some(Scope::Read));
        assert_eq!(Access::Public.needed(true), None);
        assert_eq!(Access::OwnCredentials.needed(true), None);
        assert_eq!(Access::Caller.needed(false), Some(Scope::Read));
        assert_eq!(Access::Ingest.needed(false), Some(Scope::Ingest));
        assert_eq!(Access::Admin.needed(false), Some(Scope::Admin));
    }
}
