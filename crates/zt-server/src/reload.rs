//! Files the server reloads without a restart: the admin token file (under
//! `--auth credentials`), the JWT-SVID trust bundles (`--jwt-svid-jwks`, `--jwt-svid-jwks-for`),
//! the TLS files (`--tls-cert`, `--tls-key`, `--client-ca`, `--client-ca-for`) and the `--policy`
//! file, when there are. Each is checked every [`POLL_EVERY`] for a change and reloaded on
//! SIGHUP; every reload is logged, and SIGHUP says what it reloaded, so it is never silently
//! ignored.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

use crate::auth::jwt_bundle::JwtSvidBundle;
use crate::auth::AdminTokenSet;
use crate::policy_reload::{self, Reloader};
use crate::reloadable::{FileVersion, ReloadedSetting};
use crate::tls::ReloadedTls;

/// How often the files are checked for a change.
pub(crate) const POLL_EVERY: Duration = Duration::from_secs(1);

/// Watches the files until the server stops (the task is aborted with the server): the admin
/// token file of `admin_tokens`, the JWT-SVID bundles' files, and the `--policy` file `policy`
/// was loaded from, if any.
pub(crate) async fn watch(
    admin_tokens: Option<Arc<AdminTokenSet>>,
    jwt_bundles: Vec<(String, Arc<JwtSvidBundle>)>,
    tls: Option<Arc<ReloadedTls>>,
    policy: Reloader,
) {
    let policy_file = policy.policy.source_file().map(PathBuf::from);
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; the files are still watched");
            None
        }
    };
    let mut policy_seen = policy_file.as_deref().and_then(FileVersion::of);
    let mut ticker = tokio::time::interval(POLL_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let hangup = async {
            match hangups.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = hangup => {
                let admins = admin_tokens.as_ref().map(|a| a.path().display().to_string());
                let jwks: Vec<String> = jwt_bundles
                    .iter()
                    .map(|(_, b)| b.path().display().to_string())
                    .collect();
                tracing::info!(
                    admin_token_file = admins.as_deref().unwrap_or("-"),
                    jwt_svid_jwks = ?jwks,
                    tls = tls.is_some(),
                    policy_file = %policy_file.as_deref().map_or("-".into(), |p| p.display().to_string()),
                    "SIGHUP: reloading files"
                );
                if let Some(admins) = &admin_tokens {
                    admins.reload("SIGHUP");
                }
                for (_, bundle) in &jwt_bundles {
                    bundle.reload("SIGHUP");
                }
                if let Some(tls) = &tls {
                    tls.reload("SIGHUP");
                }
                match &policy_file {
                    Some(path) => {
                        policy_seen = FileVersion::of(path);
                        policy_reload::reload(&policy, path, "SIGHUP").await;
                    }
                    None => tracing::info!("SIGHUP: no --policy file to reload (the policy is managed through the API)"),
                }
            }
            _ = ticker.tick() => {
                if let Some(admins) = &admin_tokens {
                    admins.reload_if_changed();
                }
                for (_, bundle) in &jwt_bundles {
                    bundle.reload_if_changed();
                }
                if let Some(tls) = &tls {
                    tls.reload_if_changed();
                }
                if let Some(path) = &policy_file {
                    let now = FileVersion::of(path);
                    if now != policy_seen {
                        policy_seen = now;
                        policy_reload::reload(&policy, path, "file change").await;
                    }
                }
            }
        }
    }
}
