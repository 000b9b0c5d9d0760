//! Kernel enforcement of a profile: what the kernel can enforce (probed without restricting
//! anyone), and the ruleset the helper applies to itself before it runs the command. Linux:
//! Landlock (filesystem ABI 5, TCP ABI 4, scopes ABI 6). Elsewhere nothing is enforced, which
//! the probe reports, so the broker refuses to run unless degradation is allowed.
//!
//! [`ABI_CAP_ENV`] lowers the Landlock ABI the broker believes the kernel has (to test and to
//! exercise the degraded paths on a kernel that has everything); it never raises it. The
//! broker reads it once and hands the same cap to the helper, so the ruleset applied is the one
//! the probe reported.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

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

/// The environment variable capping the Landlock ABI used: `0` claims no Landlock, `3` no TCP
/// rules and no scopes, and so on; a value that is not a number caps at 0. It only lowers what
/// the kernel is believed to support (docs/BROKER.md).
pub const ABI_CAP_ENV: &str = "ZT_BROKER_LANDLOCK_ABI_CAP";

/// The cap [`ABI_CAP_ENV`] sets, if any (fail closed: an unreadable value caps at 0).
pub fn abi_cap() -> Option<u32> {
    let value = std::env::var_os(ABI_CAP_ENV)?;
    Some(
        value
            .to_str()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0),
    )
}

/// The parts of a profile the running kernel cannot enforce (empty: all of it), with the cap of
/// [`ABI_CAP_ENV`] applied.
pub fn unenforceable() -> Vec<String> {
    unenforceable_capped(abi_cap())
}

/// The parts of a profile the running kernel cannot enforce with the Landlock ABI capped at
/// `cap` (`None`: no cap).
pub fn unenforceable_capped(cap: Option<u32>) -> Vec<String> {
    imp::unenforceable(cap)
}

/// Restricts the calling process (and what it executes) to `profile`. With `allow_degraded`
/// the parts the kernel cannot enforce are dropped (best effort); without, any such part is an
/// error and nothing is restricted halfway.
///
/// Every path is checked where it really leads once opened (symlinks resolved): it must be
/// beneath where a path `granted` gives the same right leads through symlinks no run can have
/// planted (see [`resolve_trusted`]), so a path that is a symlink out of the grant, planted in
/// a writable directory, is refused, be it a caller's narrowed path or one of the grant's own,
/// whatever happened to it between the broker's check and this open.
///
/// `cap` lowers the Landlock ABI used, as in [`unenforceable_capped`].
pub fn restrict_self(
    profile: &ConcreteProfile,
    granted: &ConcreteProfile,
    allow_degraded: bool,
    cap: Option<u32>,
) -> Result<(), String> {
    imp::restrict_self(profile, granted, allow_degraded, cap)
}

/// Where `granted`'s paths may lead, per right: readable (any list), writable, executable.
///
/// A grant is never bounded by where it leads now: a path beneath a writable grant may have
/// been replaced, through that grant (by an earlier run, say), with a symlink to `/`, and would
/// then bound, and grant, everything. So each grant is resolved by [`resolve_trusted`], which
/// follows only the symlinks no run can have planted: those outside every writable grant (the
/// system's own, such as `/bin` -> `/usr/bin`).
fn resolved(granted: &ConcreteProfile) -> [Vec<PathBuf>; 3] {
    let writable: Vec<PathBuf> = granted
        .write
        .iter()
        .filter_map(|w| std::fs::canonicalize(w).ok())
        .collect();
    let bounds = |list: &[PathBuf]| -> Vec<PathBuf> {
        list.iter()
            .filter_map(|p| resolve_trusted(p, &writable))
            .collect()
    };
    let (write, exec) = (bounds(&granted.write), bounds(&granted.exec));
    let mut readable = bounds(&granted.read);
    readable.extend(write.iter().cloned());
    readable.extend(exec.iter().cloned());
    [readable, write, exec]
}

/// Most symlinks followed in resolving one path (the kernel's own limit).
const MAX_SYMLINKS: usize = 40;

/// `path` (absolute) resolved as the kernel would, except that an entry lying strictly
/// beneath one of `writable` (resolved directories) is taken by its name, never followed: a
/// symlink there may have been planted. `None` if a followed part does not exist or loops.
fn resolve_trusted(path: &Path, writable: &[PathBuf]) -> Option<PathBuf> {
    let mut resolved = PathBuf::from("/");
    // Components still to walk, the next one last.
    let mut pending: Vec<OsString> = path
        .components()
        .rev()
        .map(|c| c.as_os_str().to_os_string())
        .collect();
    let mut followed = 0;
    while let Some(name) = pending.pop() {
        // The root (an absolute target already restarted from `/`) and `.` change nothing.
        if name == "/" || name == "." {
            continue;
        }
        if name == ".." {
            resolved.pop();
            continue;
        }
        let next = resolved.join(&name);
        let untrusted = writable.iter().any(|w| next.starts_with(w) && next != *w);
        if untrusted {
            resolved = next;
            continue;
        }
        let metadata = std::fs::symlink_metadata(&next).ok()?;
        if !metadata.file_type().is_symlink() {
            resolved = next;
            continue;
        }
        followed += 1;
        if followed > MAX_SYMLINKS {
            return None;
        }
        let target = std::fs::read_link(&next).ok()?;
        if target.is_absolute() {
            resolved = PathBuf::from("/");
        }
        pending.extend(
            target
                .components()
                .rev()
                .map(|c| c.as_os_str().to_os_string()),
        );
    }
    Some(resolved)
}

#[cfg(target_os = "linux")]
mod imp {
    use landlock::{
        Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath,
        PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
    };

    use super::{ConcreteProfile, ABI_CAP_ENV};

    /// Filesystem rights up to ABI 5 (truncate, device ioctl), TCP up to 4, scopes up to 6.
    const FS_ABI: ABI = ABI::V5;
    const NET_ABI: ABI = ABI::V4;
    const SCOPE_ABI: ABI = ABI::V6;

    /// `wanted`, or the cap when that is lower.
    fn capped(wanted: ABI, cap: Option<u32>) -> ABI {
        match cap {
            None => wanted,
            Some(n) => wanted.min(ABI::from(i32::try_from(n).unwrap_or(i32::MAX))),
        }
    }

    /// `what` is missing; say so, and that the cap (not the kernel) withholds it when it does.
    fn lacking(what: &str, wanted: ABI, cap: Option<u32>) -> String {
        match cap {
            Some(n) if capped(wanted, cap) < wanted => {
                format!("{what} (landlock capped at abi {n} by {ABI_CAP_ENV})")
            }
            _ => what.to_string(),
        }
    }

    pub(super) fn unenforceable(cap: Option<u32>) -> Vec<String> {
        let probe = |ruleset: Result<Ruleset, landlock::RulesetError>| {
            ruleset.and_then(|r| r.create()).is_ok()
        };
        let hard = || Ruleset::default().set_compatibility(CompatLevel::HardRequirement);
        let within = |wanted: ABI| capped(wanted, cap) == wanted;
        let mut missing = Vec::new();
        if !(within(ABI::V1) && probe(hard().handle_access(AccessFs::from_all(ABI::V1)))) {
            let what = "landlock is not available: nothing can be enforced";
            missing.push(lacking(what, ABI::V1, cap));
            return missing;
        }
        if !(within(FS_ABI) && probe(hard().handle_access(AccessFs::from_all(FS_ABI)))) {
            let what = "filesystem rights of landlock abi 5 (truncate, device ioctl)";
            missing.push(lacking(what, FS_ABI, cap));
        }
        if !(within(NET_ABI) && probe(hard().handle_access(AccessNet::from_all(NET_ABI)))) {
            let what = "tcp bind and connect rules (landlock abi 4)";
            missing.push(lacking(what, NET_ABI, cap));
        }
        if !(within(SCOPE_ABI) && probe(hard().scope(Scope::from_all(SCOPE_ABI)))) {
            let what = "signal and abstract unix socket scoping (landlock abi 6)";
            missing.push(lacking(what, SCOPE_ABI, cap));
        }
        missing
    }

    pub(super) fn restrict_self(
        profile: &ConcreteProfile,
        granted: &ConcreteProfile,
        allow_degraded: bool,
        cap: Option<u32>,
    ) -> Result<(), String> {
        let fs_abi = capped(FS_ABI, cap);
        let net = capped(NET_ABI, cap) == NET_ABI;
        let scoped = capped(SCOPE_ABI, cap) == SCOPE_ABI;
        let whole = fs_abi == FS_ABI && net && scoped;
        if !(allow_degraded || whole) {
            return Err(format!(
                "the kernel cannot enforce the whole sandbox: landlock is capped by {ABI_CAP_ENV}"
            ));
        }
        let rules = opened_rules(profile, granted, fs_abi)?;
        if fs_abi == ABI::Unsupported {
            // What a kernel without Landlock leaves: no_new_privs alone (as the crate sets it).
            return rustix::thread::set_no_new_privs(true)
                .map_err(|e| format!("no_new_privs could not be set: {e}"));
        }
        let level = if allow_degraded {
            CompatLevel::BestEffort
        } else {
            CompatLevel::HardRequirement
        };
        let fail = |e: landlock::RulesetError| format!("cannot build the sandbox: {e}");
        let mut ruleset = Ruleset::default()
            .set_compatibility(level)
            .handle_access(AccessFs::from_all(fs_abi))
            .map_err(fail)?;
        if net {
            ruleset = ruleset
                .handle_access(AccessNet::from_all(NET_ABI))
                .map_err(fail)?;
        }
        if scoped {
            ruleset = ruleset.scope(Scope::from_all(SCOPE_ABI)).map_err(fail)?;
        }
        let mut ruleset = ruleset.create().map_err(fail)?;
        for (fd, access) in rules {
            ruleset = ruleset
                .add_rule(PathBeneath::new(fd, access))
                .map_err(fail)?;
        }
        // Without TCP rules handled, a port rule could not be added; the network is open then,
        // which the probe reported and the receipt records.
        if net {
            for port in &profile.connect {
                ruleset = ruleset
                    .add_rule(NetPort::new(*port, AccessNet::ConnectTcp))
                    .map_err(fail)?;
            }
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

    /// Every path of `profile` opened, with the rights (of ABI `fs_abi`) its list gives, each
    /// checked to lead beneath a path `granted` gives that right.
    fn opened_rules(
        profile: &ConcreteProfile,
        granted: &ConcreteProfile,
        fs_abi: ABI,
    ) -> Result<Vec<(PathFd, BitFlags<AccessFs>)>, String> {
        let [readable, writable, executable] = super::resolved(granted);
        let read = AccessFs::from_read(fs_abi);
        let write = read | AccessFs::from_write(fs_abi);
        let exec = read | AccessFs::Execute;
        let lists = [
            (&profile.read, read, &readable),
            (&profile.write, write, &writable),
            (&profile.exec, exec, &executable),
        ];
        let mut rules = Vec::new();
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
                    access & AccessFs::from_file(fs_abi)
                };
                rules.push((fd, access));
            }
        }
        Ok(rules)
    }

    /// Where an opened path really is.
    fn real_path(fd: &PathFd) -> Option<std::path::PathBuf> {
        use std::os::fd::{AsFd, AsRawFd};
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())).ok()
    }

    #[cfg(test)]
    mod tests {
        use std::os::unix::fs::symlink;
        use std::path::PathBuf;

        use super::*;

        fn profile(read: &[PathBuf], write: &[PathBuf], exec: &[PathBuf]) -> ConcreteProfile {
            ConcreteProfile {
                read: read.to_vec(),
                write: write.to_vec(),
                exec: exec.to_vec(),
                connect: Vec::new(),
            }
        }

        /// `profile` opened as the helper opens it when nothing is narrowed.
        fn opens(granted: &ConcreteProfile) -> Result<(), String> {
            opened_rules(granted, granted, FS_ABI).map(|_| ())
        }

        #[test]
        fn a_grant_replaced_by_a_symlink_in_a_writable_directory_is_refused() {
            let dir = tempfile::tempdir().unwrap();
            let (out, secret) = (dir.path().join("out"), dir.path().join("secret"));
            std::fs::create_dir(&out).unwrap();
            std::fs::create_dir(&secret).unwrap();
            // An earlier run, allowed to write `out`, replaced `out/bin` with a way out.
            symlink(&secret, out.join("bin")).unwrap();
            let granted = profile(&[], std::slice::from_ref(&out), &[out.join("bin")]);
            let refused = opens(&granted).unwrap_err();
            assert!(
                refused.contains("leads outside the granted profile"),
                "{refused}"
            );
            // Also when the grant reaches the writable directory through a symlink of its own.
            symlink(&out, dir.path().join("link")).unwrap();
            let through = profile(
                &[],
                std::slice::from_ref(&out),
                &[dir.path().join("link/bin")],
            );
            assert!(opens(&through).is_err());
            // Read-only grants beneath it likewise.
            assert!(opens(&profile(
                &[out.join("bin")],
                std::slice::from_ref(&out),
                &[]
            ))
            .is_err());

            // The same grant is fine while `out/bin` is a directory.
            std::fs::remove_file(out.join("bin")).unwrap();
            std::fs::create_dir(out.join("bin")).unwrap();
            opens(&granted).unwrap();
            opens(&through).unwrap();
        }

        #[test]
        fn symlinks_outside_writable_grants_are_followed() {
            // The default profile's `/bin` is `/usr/bin` on merged-/usr systems.
            let tmp = tempfile::tempdir().unwrap();
            let system = ["/bin", "/usr", "/lib", "/etc"].map(PathBuf::from);
            opens(&profile(&system, &[tmp.path().to_path_buf()], &system)).unwrap();
            // A symlink outside every writable grant, in a grant: its target is the bound.
            let dir = tempfile::tempdir().unwrap();
            let real = dir.path().join("real");
            std::fs::create_dir(&real).unwrap();
            symlink(&real, dir.path().join("alias")).unwrap();
            opens(&profile(&[dir.path().join("alias")], &[], &[])).unwrap();
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    //! Seatbelt (macOS) is not wired in: every profile is reported unenforceable, so the broker
    //! refuses to run unless `--allow-degraded` (docs/BROKER.md).

    use super::ConcreteProfile;

    pub(super) fn unenforceable(_: Option<u32>) -> Vec<String> {
        vec!["no kernel sandbox on this platform: nothing can be enforced".into()]
    }

    pub(super) fn restrict_self(
        _: &ConcreteProfile,
        _: &ConcreteProfile,
        allow_degraded: bool,
        _: Option<u32>,
    ) -> Result<(), String> {
        if allow_degraded {
            Ok(())
        } else {
            Err("no kernel sandbox on this platform".into())
        }
    }
}
