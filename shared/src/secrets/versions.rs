//! The [`SecretVersions`] port: a secret's staged versions, as Secrets Manager keeps them and
//! as token rotation and the token provider need them. Two implementations: Secrets Manager
//! ([`super::SecretsManagerVersions`]) and [`MemorySecretVersions`] for tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use secrecy::SecretString;

use super::SecretError;

/// A staging label of a secret version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VersionStage {
    /// `AWSCURRENT`: the version in use.
    Current,
    /// `AWSPENDING`: the version a rotation is bringing in.
    Pending,
    /// `AWSPREVIOUS`: the version in use before the current one.
    Previous,
}

impl VersionStage {
    /// The label as Secrets Manager spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            VersionStage::Current => "AWSCURRENT",
            VersionStage::Pending => "AWSPENDING",
            VersionStage::Previous => "AWSPREVIOUS",
        }
    }
}

impl std::fmt::Display for VersionStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One version of a secret. `Debug` does not show the value.
#[derive(Debug, Clone)]
pub struct SecretVersion {
    pub version_id: String,
    pub value: SecretString,
}

/// What Secrets Manager says about a secret (never its value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretDescription {
    /// The full ARN, with its random 6-character suffix.
    pub arn: String,
    pub name: String,
    /// Version id -> its staging labels.
    pub version_stages: BTreeMap<String, Vec<String>>,
}

impl SecretDescription {
    /// The version holding `stage`, if any.
    pub fn version_at(&self, stage: VersionStage) -> Option<&str> {
        self.version_stages
            .iter()
            .find(|(_, stages)| stages.iter().any(|s| s == stage.as_str()))
            .map(|(v, _)| v.as_str())
    }
}

/// A secret's staged versions. `secret` is what Secrets Manager takes as a secret id: its name,
/// its ARN, or its ARN without the random suffix.
#[async_trait]
pub trait SecretVersions: Send + Sync {
    /// The version at `stage` (that must also be `version`, when given).
    ///
    /// # Errors
    /// [`SecretError::NotFound`] when there is no such secret or no such version at `stage`;
    /// otherwise as the backend fails.
    async fn get(&self, secret: &str, stage: VersionStage, version: Option<&str>)
    -> Result<SecretVersion, SecretError>;

    /// Stores `value` as version `request_token` at `stage` (taking the label from the version
    /// that held it). Idempotent: the same value under the same request token again succeeds
    /// and changes nothing, so a put whose answer was lost can be repeated.
    ///
    /// # Errors
    /// As the backend fails; another value under the same request token is refused.
    async fn put(&self, secret: &str, request_token: &str, value: &str, stage: VersionStage)
    -> Result<(), SecretError>;

    /// The secret's ARN, name and versions.
    ///
    /// # Errors
    /// [`SecretError::NotFound`] when there is no such secret; otherwise as the backend fails.
    async fn describe(&self, secret: &str) -> Result<SecretDescription, SecretError>;

    /// Moves `stage` to version `to`, from version `from` (which must be given when another
    /// version holds it). Moving [`VersionStage::Current`] labels the old version
    /// [`VersionStage::Previous`].
    ///
    /// # Errors
    /// As the backend fails.
    async fn move_stage(
        &self,
        secret: &str,
        stage: VersionStage,
        to: &str,
        from: Option<&str>,
    ) -> Result<(), SecretError>;
}

/// One secret of [`MemorySecretVersions`].
struct MemorySecret {
    arn: String,
    /// Version id -> (value, staging labels).
    versions: BTreeMap<String, (String, Vec<VersionStage>)>,
}

impl MemorySecret {
    /// Takes `stage` off every version but `to` and puts it on `to`; the current version
    /// becomes the previous one when `stage` is the current label.
    fn label(&mut self, stage: VersionStage, to: &str) {
        let old = self.holder(stage);
        for (id, (_, stages)) in self.versions.iter_mut() {
            if id != to {
                stages.retain(|s| *s != stage);
            } else if !stages.contains(&stage) {
                stages.push(stage);
            }
        }
        if let (VersionStage::Current, Some(old)) = (stage, old.filter(|o| o != to)) {
            self.label(VersionStage::Previous, &old);
        }
    }

    fn holder(&self, stage: VersionStage) -> Option<String> {
        self.versions
            .iter()
            .find(|(_, (_, stages))| stages.contains(&stage))
            .map(|(id, _)| id.clone())
    }
}

#[derive(Default)]
struct MemoryState {
    secrets: BTreeMap<String, MemorySecret>,
    failing_puts: u32,
    puts: u32,
}

/// Secret versions held in memory, behaving as Secrets Manager does for what the bridge uses:
/// ids by name or ARN, labels moving between versions, idempotent puts. For tests.
#[derive(Default)]
pub struct MemorySecretVersions {
    state: Mutex<MemoryState>,
}

impl std::fmt::Debug for MemorySecretVersions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySecretVersions").finish_non_exhaustive()
    }
}

fn not_found(secret: &str) -> SecretError {
    SecretError::NotFound {
        secret: secret.to_owned(),
    }
}

impl MemorySecretVersions {
    fn state(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates secret `name` whose current version is `value`; returns its ARN.
    pub fn create(&self, name: &str, value: &str) -> String {
        let arn = format!("arn:aws:secretsmanager:eu-west-1:123456789012:secret:{name}-AbC1eF");
        let versions = BTreeMap::from([("v1".to_owned(), (value.to_owned(), vec![VersionStage::Current]))]);
        self.state().secrets.insert(
            name.to_owned(),
            MemorySecret {
                arn: arn.clone(),
                versions,
            },
        );
        arn
    }

    /// The next `n` puts fail as if Secrets Manager could not be reached.
    pub fn fail_puts(&self, n: u32) {
        self.state().failing_puts = n;
    }

    /// Puts tried so far (failed ones included).
    pub fn puts(&self) -> u32 {
        self.state().puts
    }

    /// The value at `stage`, as a test reads it back.
    pub fn value_at(&self, secret: &str, stage: VersionStage) -> Option<String> {
        let state = self.state();
        let s = find(&state, secret)?;
        let id = s.holder(stage)?;
        s.versions.get(&id).map(|(v, _)| v.clone())
    }
}

/// The secret `id` names: its name, its ARN, or its ARN without the random suffix.
fn name_of(state: &MemoryState, id: &str) -> Option<String> {
    state
        .secrets
        .iter()
        .find(|(name, s)| {
            *name == id
                || s.arn == id
                || s.arn
                    .strip_prefix(id)
                    .is_some_and(|rest| rest.len() == 7 && rest.starts_with('-'))
        })
        .map(|(name, _)| name.clone())
}

fn find<'a>(state: &'a MemoryState, id: &str) -> Option<&'a MemorySecret> {
    name_of(state, id).and_then(|n| state.secrets.get(&n))
}

fn find_mut<'a>(state: &'a mut MemoryState, id: &str) -> Result<&'a mut MemorySecret, SecretError> {
    let name = name_of(state, id).ok_or_else(|| not_found(id))?;
    state.secrets.get_mut(&name).ok_or_else(|| not_found(id))
}

#[async_trait]
impl SecretVersions for MemorySecretVersions {
    async fn get(
        &self,
        secret: &str,
        stage: VersionStage,
        version: Option<&str>,
    ) -> Result<SecretVersion, SecretError> {
        let state = self.state();
        let s = find(&state, secret).ok_or_else(|| not_found(secret))?;
        let id = match version {
            Some(v) => v.to_owned(),
            None => s.holder(stage).ok_or_else(|| not_found(secret))?,
        };
        match s.versions.get(&id) {
            Some((value, stages)) if stages.contains(&stage) => Ok(SecretVersion {
                version_id: id,
                value: SecretString::from(value.clone()),
            }),
            _ => Err(not_found(secret)),
        }
    }

    async fn put(
        &self,
        secret: &str,
        request_token: &str,
        value: &str,
        stage: VersionStage,
    ) -> Result<(), SecretError> {
        let mut state = self.state();
        state.puts += 1;
        if state.failing_puts > 0 {
            state.failing_puts -= 1;
            return Err(SecretError::Unavailable {
                secret: secret.to_owned(),
                message: "injected: Secrets Manager unreachable".into(),
            });
        }
        let s = find_mut(&mut state, secret)?;
        match s.versions.get(request_token) {
            Some((existing, _)) if existing == value => return Ok(()),
            Some(_) => {
                return Err(SecretError::Backend {
                    secret: secret.to_owned(),
                    code: "ResourceExistsException".into(),
                    message: "a version with this client request token holds another value".into(),
                });
            }
            None => {}
        }
        s.versions
            .insert(request_token.to_owned(), (value.to_owned(), Vec::new()));
        s.label(stage, request_token);
        Ok(())
    }

    async fn describe(&self, secret: &str) -> Result<SecretDescription, SecretError> {
        let state = self.state();
        let name = name_of(&state, secret).ok_or_else(|| not_found(secret))?;
        let s = &state.secrets[&name];
        Ok(SecretDescription {
            arn: s.arn.clone(),
            name,
            version_stages: s
                .versions
                .iter()
                .filter(|(_, (_, stages))| !stages.is_empty())
                .map(|(id, (_, stages))| (id.clone(), stages.iter().map(|s| s.as_str().to_owned()).collect()))
                .collect(),
        })
    }

    async fn move_stage(
        &self,
        secret: &str,
        stage: VersionStage,
        to: &str,
        from: Option<&str>,
    ) -> Result<(), SecretError> {
        let mut state = self.state();
        let s = find_mut(&mut state, secret)?;
        if !s.versions.contains_key(to) {
            return Err(not_found(secret));
        }
        let holder = s.holder(stage);
        if holder.as_deref().is_some_and(|h| h != to) && holder.as_deref() != from {
            return Err(SecretError::Backend {
                secret: secret.to_owned(),
                code: "InvalidParameterException".into(),
                message: format!("{stage} is on another version: name it as the version to remove it from"),
            });
        }
        s.label(stage, to);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[tokio::test]
    async fn labels_move_as_secrets_manager_moves_them() {
        let m = MemorySecretVersions::default();
        let arn = m.create("s1/acme", "tok-1");
        for id in ["s1/acme", arn.as_str(), arn.trim_end_matches("-AbC1eF")] {
            assert_eq!(m.describe(id).await.unwrap().name, "s1/acme", "{id}");
        }
        assert!(matches!(
            m.describe("s1/acme-eu").await,
            Err(SecretError::NotFound { .. })
        ));
        assert!(matches!(
            m.get("s1/acme", VersionStage::Pending, None).await,
            Err(SecretError::NotFound { .. })
        ));

        m.put("s1/acme", "r1", "tok-2", VersionStage::Pending).await.unwrap();
        m.put("s1/acme", "r1", "tok-2", VersionStage::Pending).await.unwrap();
        assert!(
            m.put("s1/acme", "r1", "tok-3", VersionStage::Pending).await.is_err(),
            "another value under the same request token"
        );
        let pending = m.get("s1/acme", VersionStage::Pending, Some("r1")).await.unwrap();
        assert_eq!(pending.value.expose_secret(), "tok-2");
        assert!(!format!("{pending:?}").contains("tok-2"));
        assert!(m.get("s1/acme", VersionStage::Current, Some("r1")).await.is_err());

        let d = m.describe("s1/acme").await.unwrap();
        assert_eq!(d.version_at(VersionStage::Current), Some("v1"));
        assert!(
            m.move_stage("s1/acme", VersionStage::Current, "r1", None)
                .await
                .is_err(),
            "the current version must be named"
        );
        m.move_stage("s1/acme", VersionStage::Current, "r1", Some("v1"))
            .await
            .unwrap();
        assert_eq!(m.value_at("s1/acme", VersionStage::Current).as_deref(), Some("tok-2"));
        assert_eq!(m.value_at("s1/acme", VersionStage::Previous).as_deref(), Some("tok-1"));
        let d = m.describe(&arn).await.unwrap();
        assert_eq!(d.version_at(VersionStage::Previous), Some("v1"));
    }

    #[tokio::test]
    async fn failing_puts_are_counted_and_store_nothing() {
        let m = MemorySecretVersions::default();
        m.create("s", "tok-1");
        m.fail_puts(1);
        let err = m.put("s", "r", "tok-2", VersionStage::Pending).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert_eq!(m.value_at("s", VersionStage::Pending), None);
        m.put("s", "r", "tok-2", VersionStage::Pending).await.unwrap();
        assert_eq!(m.puts(), 2);
    }
}
