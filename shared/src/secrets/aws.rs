//! [`SecretVersions`] on AWS Secrets Manager: the only place the bridge uses its SDK.

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use secrecy::SecretString;

use super::SecretError;
use super::versions::{SecretDescription, SecretVersion, SecretVersions, VersionStage};

/// Secrets Manager, through the AWS SDK.
#[derive(Clone)]
pub struct SecretsManagerVersions {
    client: Client,
}

impl std::fmt::Debug for SecretsManagerVersions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsManagerVersions").finish_non_exhaustive()
    }
}

impl SecretsManagerVersions {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Configured from the environment (region, credentials, endpoint overrides).
    pub async fn from_env() -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self::new(Client::new(&config))
    }
}

/// A Secrets Manager failure as a [`SecretError`]: its code and message (or, when it never
/// answered, why), without the raw response.
fn classify<E, R>(secret: &str, e: SdkError<E, R>) -> SecretError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let secret = secret.to_owned();
    match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => SecretError::Unavailable {
            secret,
            message: DisplayErrorContext(&e).to_string(),
        },
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("Unknown").to_owned();
            let message = se.err().message().unwrap_or_default().to_owned();
            match code.as_str() {
                "ResourceNotFoundException" => SecretError::NotFound { secret },
                "AccessDeniedException" | "AccessDenied" => SecretError::AccessDenied { secret, message },
                "InternalServiceError" | "ThrottlingException" => SecretError::Unavailable { secret, message },
                _ => SecretError::Backend { secret, code, message },
            }
        }
        _ => SecretError::Backend {
            secret,
            code: "sdk".into(),
            message: DisplayErrorContext(&e).to_string(),
        },
    }
}

#[async_trait]
impl SecretVersions for SecretsManagerVersions {
    async fn get(
        &self,
        secret: &str,
        stage: VersionStage,
        version: Option<&str>,
    ) -> Result<SecretVersion, SecretError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(secret)
            .version_stage(stage.as_str())
            .set_version_id(version.map(str::to_owned))
            .send()
            .await
            .map_err(|e| classify(secret, e))?;
        Ok(SecretVersion {
            version_id: out.version_id().unwrap_or_default().to_owned(),
            value: SecretString::from(out.secret_string().unwrap_or_default().to_owned()),
        })
    }

    async fn put(
        &self,
        secret: &str,
        request_token: &str,
        value: &str,
        stage: VersionStage,
    ) -> Result<(), SecretError> {
        self.client
            .put_secret_value()
            .secret_id(secret)
            .client_request_token(request_token)
            .secret_string(value)
            .version_stages(stage.as_str())
            .send()
            .await
            .map(drop)
            .map_err(|e| classify(secret, e))
    }

    async fn describe(&self, secret: &str) -> Result<SecretDescription, SecretError> {
        let out = self
            .client
            .describe_secret()
            .secret_id(secret)
            .send()
            .await
            .map_err(|e| classify(secret, e))?;
        Ok(SecretDescription {
            arn: out.arn().unwrap_or_default().to_owned(),
            name: out.name().unwrap_or_default().to_owned(),
            version_stages: out
                .version_ids_to_stages()
                .map(|m| m.iter().map(|(v, s)| (v.clone(), s.clone())).collect())
                .unwrap_or_default(),
        })
    }

    async fn move_stage(
        &self,
        secret: &str,
        stage: VersionStage,
        to: &str,
        from: Option<&str>,
    ) -> Result<(), SecretError> {
        self.client
            .update_secret_version_stage()
            .secret_id(secret)
            .version_stage(stage.as_str())
            .move_to_version_id(to)
            .set_remove_from_version_id(from.map(str::to_owned))
            .send()
            .await
            .map(drop)
            .map_err(|e| classify(secret, e))
    }
}
