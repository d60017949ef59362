//! Secrets: read from a file or the environment, never from the config
//! itself, never shown by `Debug`.

use crate::FenceError;

/// A secret value; its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A value computed from secrets (a basic-auth header): as secret.
    pub(crate) fn derived(value: String) -> Secret {
        Secret(value)
    }

    /// The value, for the wire. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `text` with every one of `secrets` replaced by `***` (for errors built
/// from what a device or an agent said).
pub fn redact<'a>(text: &str, secrets: impl IntoIterator<Item = &'a Secret>) -> String {
    let mut t = text.to_string();
    for s in secrets.into_iter().filter(|s| !s.0.is_empty()) {
        t = t.replace(&s.0, "***");
    }
    t
}

/// Is this parameter name a secret that must come from `secrets`?
pub fn is_secret_name(name: &str) -> bool {
    name.contains("passw") || name == "community" || name.ends_with("kg")
}

/// Resolve `"file:/path"` or `"env:VAR"`.
pub fn load_secret(key: &str, source: &str) -> Result<Secret, FenceError> {
    let bad = |reason: String| FenceError::InvalidParameter {
        key: format!("secrets.{key}"),
        reason,
    };
    if let Some(path) = source.strip_prefix("file:") {
        let text =
            std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read {path}: {e}")))?;
        let v = text.trim_end_matches(['\n', '\r']).to_string();
        if v.is_empty() {
            return Err(bad(format!("{path} is empty")));
        }
        Ok(Secret(v))
    } else if let Some(var) = source.strip_prefix("env:") {
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Secret(v)),
            _ => Err(bad(format!("environment variable {var} is not set"))),
        }
    } else {
        Err(bad(
            "must be \"file:/path\" or \"env:VARIABLE\" (never the secret itself)".into(),
        ))
    }
}
