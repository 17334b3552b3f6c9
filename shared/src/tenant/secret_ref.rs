//! A secret reference: where a secret's value is read from. Kept apart from the tenant's
//! configuration, below the platforms whose settings hold references too.

use serde::{Deserialize, Serialize};

/// Where a secret is read from: the tenant's S1 API token, a platform's signing secret or key.
/// A reference only; the value is read when needed and never stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SecretRef {
    /// A Secrets Manager secret (name or ARN) whose value is the secret, or JSON with `apiToken`.
    SecretsManager { secret_id: String },
    /// An environment variable (one-machine runner).
    Env { var: String },
    /// A file holding the secret (one-machine runner).
    File { path: String },
}
