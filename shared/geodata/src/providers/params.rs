//! Typed provider parameters: each provider decodes a template's `ingestion.params` into its
//! own struct (`#[serde(deny_unknown_fields)]`) with [`decode`], whose errors name the
//! parameter at fault — and, for an unknown one, the parameters the provider accepts.

use climate_domain::template::ParamError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// Decodes `params` for `provider` into `T`.
///
/// # Errors
/// [`ParamError`] naming the parameter and what is wrong with it: `unknown param 'colour' for
/// provider chirps3_daily: expected base_url, stage, flavor`, `param 'poll_seconds' for
/// provider era5_land_cds: invalid type: string "x", expected u64`.
pub(crate) fn decode<T: DeserializeOwned>(
    provider: &str,
    params: &serde_json::Map<String, serde_json::Value>,
) -> Result<T, ParamError> {
    let value = serde_json::Value::Object(params.clone());
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        if let Some((name, expected)) = unknown_field(&message) {
            return ParamError::Unknown {
                provider: provider.to_owned(),
                name: name.to_owned(),
                expected,
            };
        }
        ParamError::Invalid(if path == "." {
            format!("params for provider {provider}: {message}")
        } else {
            format!("param '{path}' for provider {provider}: {message}")
        })
    })
}

/// serde's "unknown field `x`, expected one of `a`, `b`" as ("x", "expected a, b").
fn unknown_field(message: &str) -> Option<(&str, String)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (name, expected) = rest.split_once('`')?;
    let expected = expected
        .trim_start_matches(", ")
        .trim_start_matches("expected one of ")
        .trim_start_matches("expected ")
        .replace('`', "");
    let expected = if expected == "there are no fields" {
        "no params".to_owned()
    } else {
        format!("expected {expected}")
    };
    Some((name, expected))
}

/// An http(s) URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpUrl(String);

impl HttpUrl {
    /// `url` when it is an http(s) URL.
    ///
    /// # Errors
    /// What is wrong with it.
    pub(crate) fn new(url: &str) -> Result<Self, String> {
        let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("must be an http(s) URL".into());
        }
        Ok(Self(url.to_owned()))
    }

    /// The URL given, or `default`, without trailing slashes.
    pub(crate) fn or(given: Option<Self>, default: &str) -> String {
        let url = given.map_or_else(|| default.to_owned(), |u| u.0);
        url.trim_end_matches('/').to_owned()
    }
}

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// A text parameter also accepted as a number (`period: 2020`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Text(pub(crate) String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(Self(s)),
            serde_json::Value::Number(n) => Ok(Self(n.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "expected a string, got {other}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Chirps {
        base_url: Option<HttpUrl>,
        stage: Option<String>,
        flavor: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Poll {
        poll_seconds: Option<u64>,
        period: Option<Text>,
    }

    fn params(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn errors_name_the_parameter_and_what_is_accepted() {
        let e = decode::<Chirps>(
            "chirps3_daily",
            &params(serde_json::json!({"stage": "final", "colour": 1})),
        )
        .expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "unknown param 'colour' for provider chirps3_daily: expected base_url, stage, flavor"
        );
        let e = decode::<Poll>("p", &params(serde_json::json!({"poll_seconds": "soon"})))
            .expect_err("type")
            .to_string();
        assert!(
            e.starts_with("param 'poll_seconds' for provider p: invalid type"),
            "{e}"
        );
        let e = decode::<Chirps>("c", &params(serde_json::json!({"base_url": "ftp://x"})))
            .expect_err("scheme");
        assert_eq!(
            e.to_string(),
            "param 'base_url' for provider c: must be an http(s) URL"
        );
        let e = decode::<Chirps>("c", &params(serde_json::json!({"base_url": 3})))
            .expect_err("type")
            .to_string();
        assert!(e.starts_with("param 'base_url' for provider c:"), "{e}");
    }

    #[test]
    fn urls_default_and_text_accepts_numbers() {
        let c: Chirps = decode("c", &params(serde_json::json!({}))).expect("empty is fine");
        assert_eq!(
            HttpUrl::or(c.base_url, "https://x.org/a/"),
            "https://x.org/a"
        );
        let c: Chirps = decode(
            "c",
            &params(serde_json::json!({"base_url": "http://m/v3/"})),
        )
        .expect("valid");
        assert_eq!(HttpUrl::or(c.base_url, "https://x.org"), "http://m/v3");
        let p: Poll = decode("p", &params(serde_json::json!({"period": 2020}))).expect("number");
        assert_eq!(p.period, Some(Text("2020".into())));
        assert!(decode::<Poll>("p", &params(serde_json::json!({"period": [1]}))).is_err());
    }
}
