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

/// The settings read from files that reload themselves ([`ReloadedSetting`]).
#[derive(Clone)]
struct SettingFiles {
    admin_tokens: Option<Arc<AdminTokenSet>>,
    jwt_bundles: Vec<(String, Arc<JwtSvidBundle>)>,
    tls: Option<Arc<ReloadedTls>>,
}

impl SettingFiles {
    /// Reloads every file (`Some(trigger)`), or those that changed since read (`None`).
    fn reload(&self, trigger: Option<&str>) {
        fn one(setting: &impl ReloadedSetting, trigger: Option<&str>) {
            match trigger {
                Some(trigger) => setting.reload(trigger),
                None => setting.reload_if_changed(),
            }
        }
        if let Some(admins) = &self.admin_tokens {
            one(admins.as_ref(), trigger);
        }
        for (_, bundle) in &self.jwt_bundles {
            one(bundle.as_ref(), trigger);
        }
        if let Some(tls) = &self.tls {
            one(tls.as_ref(), trigger);
        }
    }

    /// [`Self::reload`] on a blocking thread: it reads and checks files.
    async fn reload_off_thread(&self, trigger: Option<&'static str>) {
        let files = self.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || files.reload(trigger)).await {
            tracing::error!(error = %e, "the file reload task failed");
        }
    }
}

/// Watches the files until the server stops (the task is aborted with the server): the admin
/// token file of `admin_tokens`, the JWT-SVID bundles' files, the TLS files, and the
/// `--policy` file `policy` was loaded from, if any. Files are read on a blocking thread.
pub(crate) async fn watch(
    admin_tokens: Option<Arc<AdminTokenSet>>,
    jwt_bundles: Vec<(String, Arc<JwtSvidBundle>)>,
    tls: Option<Arc<ReloadedTls>>,
    policy: Reloader,
) {
    let files = SettingFiles {
        admin_tokens,
        jwt_bundles,
        tls,
    };
    let policy_file = policy.policy.source_file().map(PathBuf::from);
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; the files are still watched");
            None
        }
    };
    let mut policy_seen = version_of(policy_file.clone()).await;
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
                let admins = files.admin_tokens.as_ref().map(|a| a.path().display().to_string());
                let jwks: Vec<String> = files
                    .jwt_bundles
                    .iter()
                    .map(|(_, b)| b.path().display().to_string())
                    .collect();
                tracing::info!(
                    admin_token_file = admins.as_deref().unwrap_or("-"),
                    jwt_svid_jwks = ?jwks,
                    tls = files.tls.is_some(),
                    policy_file = %policy_file.as_deref().map_or("-".into(), |p| p.display().to_string()),
                    "SIGHUP: reloading files"
                );
                files.reload_off_thread(Some("SIGHUP")).await;
                match &policy_file {
                    Some(path) => {
                        policy_seen = version_of(Some(path.clone())).await;
                        policy_reload::reload(&policy, path, "SIGHUP").await;
                    }
                    None => tracing::info!("SIGHUP: no --policy file to reload (the policy is managed through the API)"),
                }
            }
            _ = ticker.tick() => {
                files.reload_off_thread(None).await;
                if let Some(path) = &policy_file {
                    let now = version_of(Some(path.clone())).await;
                    if now != policy_seen {
                        policy_seen = now;
                        policy_reload::reload(&policy, path, "file change").await;
                    }
                }
            }
        }
    }
}

/// The version of `path`, read on a blocking thread.
async fn version_of(path: Option<PathBuf>) -> Option<FileVersion> {
    let path = path?;
    tokio::task::spawn_blocking(move || FileVersion::of(&path))
        .await
        .ok()
        .flatten()
}
