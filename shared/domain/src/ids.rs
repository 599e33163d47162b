//! Identifiers of templates, extents, managed datasets, runs and jobs.
//!
//! Ids appear in URLs, object-store prefixes and queue messages, so they are restricted to a
//! small, URL- and path-safe alphabet and validated once, on construction.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why an identifier was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid {kind} '{value}': use 1 to {max_len} characters from a-z, 0-9, '_' and '-', starting with a letter or digit"
)]
pub struct IdError {
    /// The longest value accepted for this kind.
    pub max_len: usize,
    /// Which kind of id was being parsed (`template id`, `extent id`, `dataset id`).
    pub kind: &'static str,
    /// The rejected input.
    pub value: String,
}

fn validate(kind: &'static str, max_len: usize, value: &str) -> Result<(), IdError> {
    let ok = !value.is_empty()
        && value.len() <= max_len
        && value
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(IdError {
            max_len,
            kind,
            value: value.to_owned(),
        })
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps an id.
            ///
            /// # Errors
            /// Returns [`IdError`] when the value is empty, too long or has characters outside
            /// `a-z 0-9 _ -`.
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                validate($kind, $max, &value)?;
                Ok(Self(value))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
    };
}

id_type!(
    /// Id of a dataset template, e.g. `chirps3_precipitation_daily`.
    TemplateId,
    "template id",
    63
);
id_type!(
    /// Id of a configured extent, e.g. `sle`.
    ExtentId,
    "extent id",
    63
);
id_type!(
    /// Public id of a managed dataset: `{template_id}_{extent_id}`. It never changes.
    DatasetId,
    "dataset id",
    127
);

/// Whether `path` is a plain relative key inside a Zarr store, safe to join under a version's
/// prefix: 1 to 1024 visible ASCII characters, `/`-separated, no empty, `.` or `..` segments,
/// no leading `/`, no backslash. Every key a Zarr v3 store contains passes.
pub fn is_store_key(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 1024
        && !path.starts_with('/')
        && path.chars().all(|c| c.is_ascii_graphic() && c != '\\')
        && path
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
}

/// Why a job or run id was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} '{value}': a {kind} is a UUID, e.g. 0193a5c2-7b1e-7c3d-9f00-1a2b3c4d5e6f")]
pub struct UuidIdError {
    /// Which kind of id was being parsed (`job id`, `run id`).
    pub kind: &'static str,
    /// The rejected input.
    pub value: String,
}

/// Why a job id was rejected.
pub type JobIdError = UuidIdError;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(uuid::Uuid);

        impl $name {
            /// Parses an id.
            ///
            /// # Errors
            /// [`UuidIdError`] when `value` is not a UUID.
            pub fn new(value: &str) -> Result<Self, UuidIdError> {
                uuid::Uuid::try_parse(value).map(Self).map_err(|_| UuidIdError {
                    kind: $kind,
                    value: value.to_owned(),
                })
            }

            /// The id with this 128-bit value (constants in tests).
            #[must_use]
            pub const fn from_u128(value: u128) -> Self {
                Self(uuid::Uuid::from_u128(value))
            }

            /// A new id, version 7: ids made later sort after ids made earlier.
            #[must_use]
            pub fn generate() -> Self {
                Self(uuid::Uuid::now_v7())
            }
        }

        impl From<uuid::Uuid> for $name {
            fn from(value: uuid::Uuid) -> Self {
                Self(value)
            }
        }

        impl TryFrom<String> for $name {
            type Error = UuidIdError;
            fn try_from(value: String) -> Result<Self, UuidIdError> {
                Self::new(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = UuidIdError;
            fn from_str(s: &str) -> Result<Self, UuidIdError> {
                Self::new(s)
            }
        }
    };
}

uuid_id!(
    /// Id of a durable job (a process execution, a maintenance job): a UUID, made by the caller
    /// (version 7, so ids sort by creation), shown hyphenated in lower case.
    JobId,
    "job id"
);
uuid_id!(
    /// Id of an ingestion or sync run: a UUID (version 7 for runs made here, so ids sort by
    /// creation and the newest-first pagination cursor is the id), shown hyphenated in lower case.
    RunId,
    "run id"
);

impl DatasetId {
    /// The id of the managed dataset made from `template` over `extent`.
    pub fn managed(template: &TemplateId, extent: &ExtentId) -> Self {
        // Both parts are valid ids of at most 63 characters and '_' is in the alphabet, so the
        // joined value (at most 127 characters) is always a valid dataset id.
        Self(format!("{}_{}", template.as_str(), extent.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        assert!(TemplateId::new("chirps3_precipitation_daily").is_ok());
        assert!(ExtentId::new("sle-2").is_ok());
    }

    #[test]
    fn rejects_unsafe_ids_with_a_message_naming_the_kind() {
        for bad in [
            "",
            "Upper",
            "../etc",
            "a b",
            "_lead",
            "x".repeat(64).as_str(),
        ] {
            let err = ExtentId::new(bad).expect_err(bad);
            assert!(err.to_string().starts_with("invalid extent id"), "{err}");
        }
    }

    #[test]
    fn job_ids_are_uuids_round_tripped_in_lower_case() {
        let id = JobId::new("0193A5C2-7B1E-7C3D-9F00-1A2B3C4D5E6F").expect("a UUID");
        assert_eq!(id.to_string(), "0193a5c2-7b1e-7c3d-9f00-1a2b3c4d5e6f");
        assert_eq!(id.to_string().parse::<JobId>(), Ok(id));
        let json = serde_json::to_string(&id).expect("serialise");
        assert_eq!(json, "\"0193a5c2-7b1e-7c3d-9f00-1a2b3c4d5e6f\"");
        for bad in ["", "42", "../etc", "0193a5c2-7b1e-7c3d-9f00"] {
            let err = JobId::new(bad).expect_err(bad);
            assert!(err.to_string().contains("a job id is a UUID"), "{err}");
        }
    }

    #[test]
    fn run_ids_sort_by_creation_and_name_their_kind_when_rejected() {
        let first = RunId::generate();
        let second = RunId::generate();
        assert!(first < second);
        assert!(first.to_string() < second.to_string());
        let err = RunId::new("nope").expect_err("not a UUID");
        assert!(
            err.to_string().starts_with("invalid run id 'nope'"),
            "{err}"
        );
    }

    #[test]
    fn managed_dataset_id_joins_template_and_extent() {
        let t = TemplateId::new("sample_t2m").expect("valid");
        let e = ExtentId::new("sle").expect("valid");
        assert_eq!(DatasetId::managed(&t, &e).as_str(), "sample_t2m_sle");
    }
}
