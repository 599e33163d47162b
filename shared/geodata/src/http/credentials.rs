//! Credentials for a host: the provider's API key, else the netrc file's entry.

use super::*;

/// HTTP Basic credentials (never logged: `Debug` hides the password).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name (may be empty: some upstreams only check the token).
    pub login: String,
    /// Password or access token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("login", &self.login)
            .field("password", &"***")
            .finish()
    }
}

/// The credentials of `host` in a netrc file's text: its `machine` entry, else the `default`
/// entry. Tokens are whitespace-separated; `macdef` bodies (up to an empty line) are skipped.
pub fn netrc_lookup(text: &str, host: &str) -> Option<Credentials> {
    let mut found: Option<Credentials> = None;
    let mut default: Option<Credentials> = None;
    let mut lines = text.lines();
    let mut tokens: Vec<String> = Vec::new();
    while let Some(line) = lines.next() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"macdef") {
            // A macro runs to the next empty line.
            for l in lines.by_ref() {
                if l.trim().is_empty() {
                    break;
                }
            }
            continue;
        }
        tokens.extend(words.iter().map(|w| (*w).to_owned()));
    }
    // Entries: `machine NAME` or `default`, followed by key/value pairs.
    let mut i = 0;
    while i < tokens.len() {
        let (name, mut j) = match tokens[i].as_str() {
            "machine" if i + 1 < tokens.len() => (Some(tokens[i + 1].clone()), i + 2),
            "default" => (None, i + 1),
            _ => {
                i += 1;
                continue;
            }
        };
        let mut c = Credentials {
            login: String::new(),
            password: String::new(),
        };
        while j + 1 < tokens.len() && !matches!(tokens[j].as_str(), "machine" | "default") {
            match tokens[j].as_str() {
                "login" => c.login = tokens[j + 1].clone(),
                "password" => c.password = tokens[j + 1].clone(),
                _ => {}
            }
            j += 2;
        }
        match name {
            Some(n) if n.eq_ignore_ascii_case(host) && found.is_none() => found = Some(c),
            None if default.is_none() => default = Some(c),
            _ => {}
        }
        i = j;
    }
    found.or(default)
}

impl Downloader {
    /// The configured credentials for `host`: the provider's `api_key` (as the token of user
    /// `login_for_key`), else the host's entry in the netrc file (`netrc` setting, `$NETRC`,
    /// or `~/.netrc`).
    ///
    /// # Errors
    /// A message when the netrc file exists but cannot be read.
    pub fn credentials(
        &self,
        host: &str,
        login_for_key: &str,
    ) -> Result<Option<Credentials>, String> {
        if let Some(key) = &self.settings.api_key {
            return Ok(Some(Credentials {
                login: login_for_key.to_owned(),
                password: key.clone(),
            }));
        }
        let path = self
            .settings
            .netrc
            .clone()
            .or_else(|| std::env::var_os("NETRC").map(PathBuf::from))
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".netrc")));
        let Some(path) = path else { return Ok(None) };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(netrc_lookup(&text, host)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!(
                "cannot read the netrc file {}: {e}",
                path.display()
            )),
        }
    }
}
