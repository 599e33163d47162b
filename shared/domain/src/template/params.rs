//! Why a template's provider parameters were refused: the error every provider's parameter
//! check returns, so the catalogue loader, the API and the workers report it the same way.

/// A template's `ingestion.provider` or `ingestion.params` that a provider cannot use. The
/// message names the parameter and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// No provider of that name is compiled in.
    #[error("unknown provider '{name}': available providers are {available}")]
    UnknownProvider {
        /// The name the template gave.
        name: String,
        /// The providers there are, comma-separated.
        available: String,
    },
    /// A parameter the provider does not take.
    #[error("unknown param '{name}' for provider {provider}: {expected}")]
    Unknown {
        /// The provider.
        provider: String,
        /// The parameter given.
        name: String,
        /// What the provider accepts (`expected base_url, stage`, or `no params`).
        expected: String,
    },
    /// A parameter (or the parameters as a whole) with a value the provider cannot use; the
    /// message names the parameter.
    #[error("{0}")]
    Invalid(String),
    /// The template itself does not fit the provider (its period type, its variable).
    #[error("{0}")]
    Template(String),
}

impl ParamError {
    /// [`ParamError::Invalid`] with `message`, which names the parameter.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }

    /// [`ParamError::Template`] with `message`.
    pub fn template(message: impl Into<String>) -> Self {
        Self::Template(message.into())
    }
}
