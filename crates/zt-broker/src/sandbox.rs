//! Kernel enforcement of a profile: what the kernel can enforce (probed without restricting
//! anyone), and the ruleset the helper applies to itself before it runs the command. Linux:
//! Landlock (filesystem ABI 5, TCP ABI 4, scopes ABI 6). Elsewhere nothing is enforced, which
//! the probe reports, so the broker refuses to run unless degradation is allowed.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A profile with `@tmp` resolved to the run's private directory: what the helper applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcreteProfile {
    /// Readable paths.
    pub read: Vec<PathBuf>,
    /// Readable and writable paths.
    pub write: Vec<PathBuf>,
    /// Readable and executable paths.
    pub exec: Vec<PathBuf>,
    /// TCP ports the command may connect to; empty: none.
    pub connect: Vec<u16>,
}

/// The parts of a profile the running kernel cannot enforce (empty: all of it).
pub fn unenforceable() -> Vec<String> {
    imp::unenforceable()
}

/// Restricts the calling process (and what it executes) to `profile`. With `allow_degraded`
/// the parts the kernel cannot enforce are dropped (best effort); without, any such part is an
/// error and nothing is restricted halfway.
pub fn restrict_self(profile: &ConcreteProfile, allow_degraded: bool) -> Result<(), String> {
    imp::restrict_self(profile, allow_degraded)
}

#[cfg(target_os = "linux")]
mod imp {
    use landlock::{
        Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, PathBeneath, PathFd,
        Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
    };

    use super::ConcreteProfile;

    /// Filesystem rights up to ABI 5 (truncate, device ioctl), TCP up to 4, scopes up to 6.
    const FS_ABI: ABI = ABI::V5;
    const NET_ABI: ABI = ABI::V4;
    const SCOPE_ABI: ABI = ABI::V6;

    pub(super) fn unenforceable() -> Vec<String> {
        let probe = |ruleset: Result<Ruleset, landlock::RulesetError>| {
            ruleset.and_then(|r| r.create()).is_ok()
        };
        let hard = || Ruleset::default().set_compatibility(CompatLevel::HardRequirement);
        let mut missing = Vec::new();
        if !probe(hard().handle_access(AccessFs::from_all(ABI::V1))) {
            missing.push("landlock is not available: nothing can be enforced".to_string());
            return missing;
        }
        if !probe(hard().handle_access(AccessFs::from_all(FS_ABI))) {
            missing.push("filesystem rights of landlock abi 5 (truncate, device ioctl)".into());
        }
        if !probe(hard().handle_access(AccessNet::from_all(NET_ABI))) {
            missing.push("tcp bind and connect rules (landlock abi 4)".into());
        }
        if !probe(hard().scope(Scope::from_all(SCOPE_ABI))) {
            missing.push("signal and abstract unix socket scoping (landlock abi 6)".into());
        }
        missing
    }

    pub(super) fn restrict_self(
        profile: &ConcreteProfile,
        allow_degraded: bool,
    ) -> Result<(), String> {
        let level = if allow_degraded {
            CompatLevel::BestEffort
        } else {
            CompatLevel::HardRequirement
        };
        let fail = |e: landlock::RulesetError| format!("cannot build the sandbox: {e}");
        let mut ruleset = Ruleset::default()
            .set_compatibility(level)
            .handle_access(AccessFs::from_all(FS_ABI))
            .map_err(fail)?
            .handle_access(AccessNet::from_all(NET_ABI))
            .map_err(fail)?
            .scope(Scope::from_all(SCOPE_ABI))
            .map_err(fail)?
            .create()
            .map_err(fail)?;
        let read = AccessFs::from_read(FS_ABI);
        let write = read | AccessFs::from_write(FS_ABI);
        let exec = read | AccessFs::Execute;
        let lists = [
            (&profile.read, read),
            (&profile.write, write),
            (&profile.exec, exec),
        ];
        for (paths, access) in lists {
            for path in paths {
                // A path that does not exist grants nothing (it cannot appear later either:
                // the rule is bound to the file opened now).
                let Ok(fd) = PathFd::new(path) else { continue };
                let access = if path.is_dir() {
                    access
                } else {
                    access & AccessFs::from_file(FS_ABI)
                };
                ruleset = ruleset
                    .add_rule(PathBeneath::new(fd, access))
                    .map_err(fail)?;
            }
        }
        for port in &profile.connect {
            ruleset = ruleset
                .add_rule(NetPort::new(*port, AccessNet::ConnectTcp))
                .map_err(fail)?;
        }
        let status = ruleset.restrict_self().map_err(fail)?;
        if !allow_degraded && status.ruleset != RulesetStatus::FullyEnforced {
            return Err("the kernel did not enforce the whole sandbox".into());
        }
        if !status.no_new_privs {
            return Err("no_new_privs could not be set".into());
        }
        Ok(())
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    //! Seatbelt (macOS) is not wired in: every profile is reported unenforceable, so the broker
    //! refuses to run unless `--allow-degraded` (docs/BROKER.md).

    use super::ConcreteProfile;

    pub(super) fn unenforceable() -> Vec<String> {
        vec!["no kernel sandbox on this platform: nothing can be enforced".into()]
    }

    pub(super) fn restrict_self(_: &ConcreteProfile, allow_degraded: bool) -> Result<(), String> {
        if allow_degraded {
            Ok(())
        } else {
            Err("no kernel sandbox on this platform".into())
        }
    }
}
