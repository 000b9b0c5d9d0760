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
///
/// Every path is checked where it really leads once opened (symlinks resolved): it must be
/// beneath a path `granted` gives the same right, so a caller's narrowed path that is a
/// symlink out of the grant (planted in a writable directory, say) is refused, whatever
/// happened to it between the broker's check and this open.
pub fn restrict_self(
    profile: &ConcreteProfile,
    granted: &ConcreteProfile,
    allow_degraded: bool,
) -> Result<(), String> {
    imp::restrict_self(profile, granted, allow_degraded)
}

/// `granted`'s paths with symlinks resolved (those that exist): readable (any list), writable,
/// executable.
fn resolved(granted: &ConcreteProfile) -> [Vec<PathBuf>; 3] {
    let canonical = |list: &[PathBuf]| -> Vec<PathBuf> {
        list.iter()
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect()
    };
    let mut readable = canonical(&granted.read);
    readable.extend(canonical(&granted.write));
    readable.extend(canonical(&granted.exec));
    [
        readable,
        canonical(&granted.write),
        canonical(&granted.exec),
    ]
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
        granted: &ConcreteProfile,
        allow_degraded: bool,
    ) -> Result<(), String> {
        let [readable, writable, executable] = super::resolved(granted);
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
            (&profile.read, read, &readable),
            (&profile.write, write, &writable),
            (&profile.exec, exec, &executable),
        ];
        for (paths, access, bounds) in lists {
            for path in paths {
                // A path that does not exist grants nothing (it cannot appear later either:
                // the rule is bound to the file opened now).
                let Ok(fd) = PathFd::new(path) else { continue };
                let real = real_path(&fd);
                if !real
                    .as_ref()
                    .is_some_and(|r| bounds.iter().any(|b| r.starts_with(b)))
                {
                    return Err(format!(
                        "`{}` leads outside the granted profile (to `{}`)",
                        path.display(),
                        real.unwrap_or_default().display()
                    ));
                }
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

    /// Where an opened path really is.
    fn real_path(fd: &PathFd) -> Option<std::path::PathBuf> {
        use std::os::fd::{AsFd, AsRawFd};
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())).ok()
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

    pub(super) fn restrict_self(
        _: &ConcreteProfile,
        _: &ConcreteProfile,
        allow_degraded: bool,
    ) -> Result<(), String> {
        if allow_degraded {
            Ok(())
        } else {
            Err("no kernel sandbox on this platform".into())
        }
    }
}
