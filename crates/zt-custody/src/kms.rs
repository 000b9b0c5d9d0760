//! The AWS KMS custody key: an asymmetric `ECC_NIST_P256` key that signs each 32-byte digest
//! with `Sign` (`MessageType: DIGEST`, `SigningAlgorithm: ECDSA_SHA_256`). Credentials,
//! Region and endpoint come from the standard AWS configuration chain (environment, shared
//! config and credentials files, container or instance roles); `AWS_ENDPOINT_URL` points the
//! client at another implementation of the KMS API.
//!
//! A batch's digests are signed concurrently, at most [`KmsKey::concurrency`] calls in flight,
//! so throughput is bounded by the account's KMS request quota rather than by one call's
//! latency. The SDK's own retries (with backoff, throttling included) run inside the batch's
//! deadline.

use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_kms::error::DisplayErrorContext;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, MessageType, SigningAlgorithmSpec};
use aws_sdk_kms::Client;
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;
use zt_contract::Digest32;
use zt_ledger::SignError;

use crate::der::p256_point_from_spki;
use crate::remote::{RemoteIdentity, RemoteKey};
use crate::CustodyError;

/// A runtime shut down without blocking when dropped: a key may be dropped on an async
/// thread (a refused start, a server stopping), where a runtime must not block.
struct OwnedRuntime(Option<Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// A KMS key, with the client and the runtime its calls run on.
pub struct KmsKey {
    runtime: OwnedRuntime,
    client: Client,
    identity: RemoteIdentity,
    concurrency: usize,
}

impl std::fmt::Debug for KmsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client and runtime hold credentials and connections: only the key is named.
        f.debug_struct("KmsKey")
            .field("arn", &self.identity.jwk.kid)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl KmsKey {
    /// Reads the key's public half with `GetPublicKey` and checks that it is an
    /// `ECC_NIST_P256` signing key allowing `ECDSA_SHA_256`. `key` is a key id, alias or ARN;
    /// records name the key by the ARN KMS returns.
    pub fn open(key: &str, timeout: Duration, concurrency: usize) -> Result<Self, CustodyError> {
        let owned = OwnedRuntime(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("zt-kms")
                .enable_all()
                .build()
                .map_err(|e| CustodyError::Kms(format!("cannot start the KMS client: {e}")))?,
        ));
        let runtime = owned
            .0
            .as_ref()
            .ok_or_else(|| CustodyError::Kms("no runtime".into()))?;
        let client = on(runtime, timeout, async {
            // Adaptive retries: past the account's request quota the client slows its own
            // calls instead of hammering KMS into more throttling.
            let config = aws_config::defaults(BehaviorVersion::latest())
                .retry_config(aws_config::retry::RetryConfig::adaptive())
                .load()
                .await;
            Ok(Client::new(&config))
        })
        .map_err(|e| CustodyError::Kms(e.to_string()))?;
        let request = client.get_public_key().key_id(key).send();
        let out = on(runtime, timeout, async move {
            request
                .await
                .map_err(|e| SignError::Unavailable(DisplayErrorContext(e).to_string()))
        })
        .map_err(|e| CustodyError::Kms(format!("GetPublicKey of `{key}`: {e}")))?;
        if !is_p256(&out)
            || !out
                .signing_algorithms()
                .contains(&SigningAlgorithmSpec::EcdsaSha256)
        {
            return Err(CustodyError::Kms(format!(
                "`{key}` is not an ECC_NIST_P256 signing key allowing ECDSA_SHA_256"
            )));
        }
        // AWS returns the key ARN; the ARN given is used where an implementation does not.
        let arn = [out.key_id().unwrap_or_default(), key]
            .into_iter()
            .find(|id| id.starts_with("arn:"))
            .ok_or_else(|| {
                CustodyError::Kms(format!(
                    "GetPublicKey of `{key}` returned no key ARN: give the key's ARN"
                ))
            })?
            .to_string();
        let point = out
            .public_key()
            .and_then(|blob| p256_point_from_spki(blob.as_ref()))
            .ok_or_else(|| CustodyError::Kms("GetPublicKey returned no P-256 public key".into()))?;
        let identity = RemoteIdentity::p256("aws-kms", arn, point).map_err(CustodyError::Kms)?;
        Ok(Self {
            runtime: owned,
            client,
            identity,
            concurrency: concurrency.max(1),
        })
    }

    /// The most `Sign` calls in flight at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// The key's ARN, as `Sign` is asked for it.
    fn arn(&self) -> String {
        self.identity.jwk.kid.clone()
    }
}

/// Whether `GetPublicKey` describes an `ECC_NIST_P256` key.
#[expect(
    deprecated,
    reason = "`CustomerMasterKeySpec` is the older name of `KeySpec`, still all some KMS implementations return"
)]
fn is_p256(out: &aws_sdk_kms::operation::get_public_key::GetPublicKeyOutput) -> bool {
    out.key_spec() == Some(&KeySpec::EccNistP256)
        || (out.key_spec().is_none()
            && out.customer_master_key_spec()
                == Some(&aws_sdk_kms::types::CustomerMasterKeySpec::EccNistP256))
}

/// Runs `work` on the KMS runtime and waits for it, at most `timeout`, from any thread
/// (including a thread of another runtime, which must not `block_on`).
fn on<T: Send + 'static>(
    runtime: &Runtime,
    timeout: Duration,
    work: impl std::future::Future<Output = Result<T, SignError>> + Send + 'static,
) -> Result<T, SignError> {
    let (done, result) = std::sync::mpsc::sync_channel(1);
    let task = runtime.spawn(async move {
        let outcome = tokio::time::timeout(timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(SignError::Unavailable(format!(
                    "no answer within {timeout:?}"
                )))
            });
        let _ = done.send(outcome);
    });
    // The task ends by itself at the timeout; the margin covers scheduling only.
    match result.recv_timeout(timeout + Duration::from_secs(1)) {
        Ok(outcome) => outcome,
        Err(_) => {
            task.abort();
            Err(SignError::Unavailable(format!(
                "no answer within {timeout:?}"
            )))
        }
    }
}

impl RemoteKey for KmsKey {
    fn identity(&self) -> &RemoteIdentity {
        &self.identity
    }

    /// All or nothing: [`RemoteKey::sign_each`], failed by its first failure in order.
    fn sign_digests(
        &self,
        digests: &[Digest32],
        deadline: Duration,
    ) -> Result<Vec<Vec<u8>>, SignError> {
        self.sign_each(digests, deadline).into_iter().collect()
    }

    fn sign_each(
        &self,
        digests: &[Digest32],
        deadline: Duration,
    ) -> Vec<Result<Vec<u8>, SignError>> {
        let Some(runtime) = self.runtime.0.as_ref() else {
            return vec![Err(SignError::Sign)];
        };
        let (client, arn, digests) = (self.client.clone(), self.arn(), digests.to_vec());
        let slots = Arc::new(Semaphore::new(self.concurrency));
        // The calls stop at `deadline` with what came back; `on`'s own limit is only a backstop.
        let outcome = on(runtime, deadline + Duration::from_millis(250), async move {
            let mut calls = start_calls(&client, &arn, &digests, &slots);
            let mut answers: Vec<Option<Result<Vec<u8>, SignError>>> =
                digests.iter().map(|_| None).collect();
            let stop = tokio::time::sleep(deadline);
            tokio::pin!(stop);
            // Where the signed prefix waits: each answer is looked at once, not after every join.
            let mut waiting_at = 0;
            while let Some(at) = prefix_end(&answers, waiting_at) {
                waiting_at = at;
                tokio::select! {
                    joined = calls.join_next() => match joined {
                        Some(Ok((i, answer))) => {
                            if let Some(slot) = answers.get_mut(i) {
                                *slot = Some(answer);
                            }
                        }
                        // A task that did not finish leaves its digest unsigned.
                        Some(Err(_)) => {}
                        None => break,
                    },
                    () = &mut stop => break,
                }
            }
            // Dropping the set aborts the calls whose answers can no longer be kept.
            Ok(answers
                .into_iter()
                .map(|answer| {
                    answer.unwrap_or_else(|| {
                        Err(SignError::Unavailable(format!(
                            "no answer within {deadline:?}"
                        )))
                    })
                })
                .collect::<Vec<_>>())
        });
        outcome.unwrap_or_else(|e| vec![Err(e)])
    }
}

/// One `Sign` call per digest, at most `slots` in flight; each answers with its digest's index.
/// Spawned on the current runtime (the KMS client's).
fn start_calls(
    client: &Client,
    arn: &str,
    digests: &[Digest32],
    slots: &Arc<Semaphore>,
) -> tokio::task::JoinSet<(usize, Result<Vec<u8>, SignError>)> {
    let mut calls = tokio::task::JoinSet::new();
    for (i, digest) in digests.iter().enumerate() {
        let request = client
            .sign()
            .key_id(arn)
            .message(Blob::new(digest.0.to_vec()))
            .message_type(MessageType::Digest)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256);
        let slots = slots.clone();
        calls.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let answer = match request.send().await {
                Ok(out) => out
                    .signature()
                    .map(|b| b.as_ref().to_vec())
                    .ok_or_else(|| SignError::Unavailable("Sign returned no signature".into())),
                Err(e) => Err(SignError::Unavailable(DisplayErrorContext(e).to_string())),
            };
            (i, answer)
        });
    }
    calls
}

/// The first unanswered digest from `from` on, where the signed prefix waits; `None` once
/// nothing more can join it: every answer is in, or a failure is in with every answer before
/// it. The answers before `from` are signed ones.
fn prefix_end(answers: &[Option<Result<Vec<u8>, SignError>>], from: usize) -> Option<usize> {
    for (i, answer) in answers.iter().enumerate().skip(from) {
        match answer {
            None => return Some(i),
            Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
    None
}

/// Whether nothing more can join the signed prefix.
#[cfg(test)]
fn prefix_settled(answers: &[Option<Result<Vec<u8>, SignError>>]) -> bool {
    prefix_end(answers, 0).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_is_settled_once_nothing_more_can_join_it() {
        let ok = || Some(Ok(vec![1u8]));
        let failed = || Some(Err(SignError::Unavailable("throttled".into())));
        assert!(prefix_settled(&[ok(), ok()]), "every answer in");
        assert!(
            prefix_settled(&[ok(), failed(), None]),
            "a failure with every answer before it"
        );
        assert!(
            !prefix_settled(&[None, failed()]),
            "an earlier answer may still come"
        );
        assert!(!prefix_settled(&[ok(), None]));
        assert!(prefix_settled(&[]));
        // From where it waited last: the same answer as from the start.
        let answers = [ok(), ok(), None, failed()];
        assert_eq!(prefix_end(&answers, 0), Some(2));
        assert_eq!(prefix_end(&answers, 2), Some(2));
    }
}
