//! The sandbox profile an execution broker runs an allowed command under: readable, writable
//! and executable paths, and the TCP ports it may connect to (none: no network). The control
//! plane grants it from the deciding permit's annotations (docs/BROKER.md); the broker may
//! narrow it, never widen it. It is hashed into the decision record and the execution receipt,
//! so its serialized form is canonical: fields in sorted order, every list sorted and deduplicated.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

/// The write-list entry that stands for a fresh private temporary directory the broker makes
/// for each run (mode 0700, removed afterwards, given to the command as `TMPDIR`).
pub const PRIVATE_TMP: &str = "@tmp";
/// Most entries in one list of a profile.
pub const MAX_ENTRIES: usize = 64;
/// Longest path in a profile, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;

/// The system paths the default profile may read and execute (those that exist are used).
pub const DEFAULT_EXEC: [&str; 7] = [
    "/bin", "/lib", "/lib32", "/lib64", "/libx32", "/sbin", "/usr",
];
/// The paths the default profile may read only.
pub const DEFAULT_READ: [&str; 4] = ["/dev/random", "/dev/urandom", "/dev/zero", "/etc"];
/// The paths the default profile may write: the private temporary directory and `/dev/null`.
pub const DEFAULT_WRITE: [&str; 2] = ["/dev/null", PRIVATE_TMP];

/// Annotation prefix of the sandbox grant on a Cedar permit (`@sandbox_write("/srv/out")`).
pub const ANNOTATION_PREFIX: &str = "sandbox_";

/// Why a profile (or an annotation, or a narrowing request) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// A path that is not absolute, not normal (`.`, `..`, `//`, trailing `/`), too long or
    /// holds a NUL or control character.
    #[error("sandbox path `{0}` is not an absolute normal path")]
    BadPath(String),
    /// `@tmp` outside the write list.
    #[error("`{PRIVATE_TMP}` may only be granted for writing")]
    MisplacedTmp,
    /// A port that is not 1..=65535.
    #[error("sandbox port `{0}` is not a tcp port (1-65535)")]
    BadPort(String),
    /// More than [`MAX_ENTRIES`] entries in a list.
    #[error("a sandbox list holds more than {MAX_ENTRIES} entries")]
    TooMany,
    /// An annotation `sandbox_*` this version does not know (refused: it may mean to restrict).
    #[error("unknown sandbox annotation `@{0}`")]
    UnknownAnnotation(String),
    /// `@sandbox_base` other than `default` or `empty`.
    #[error("`@sandbox_base` is `default` or `empty`, not `{0}`")]
    BadBase(String),
    /// `@sandbox_degraded` other than `allow` or `refuse`.
    #[error("`@sandbox_degraded` is `allow` or `refuse`, not `{0}`")]
    BadDegraded(String),
    /// The caller asked for more than the granted profile.
    #[error("the requested sandbox is wider than the granted one: {0}")]
    Wider(String),
}

/// A sandbox profile: what the command may touch. Always canonical (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawProfile")]
pub struct SandboxProfile {
    /// TCP ports the command may connect to (any address); empty: no TCP at all.
    connect: Vec<u16>,
    /// Whether the command may run where the kernel cannot enforce the whole profile (the
    /// broker's `--allow-degraded` asks; the policy decides). Written only when granted, so
    /// profiles without it keep their bytes and hashes.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    degraded: bool,
    /// Paths (and what is beneath them) the command may read and execute.
    exec: Vec<String>,
    /// Paths the command may read.
    read: Vec<String>,
    /// Paths the command may read and write (create, remove, rename, truncate); `@tmp` is the
    /// private temporary directory.
    write: Vec<String>,
}

/// The wire form before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    connect: Vec<u16>,
    #[serde(default)]
    degraded: bool,
    exec: Vec<String>,
    read: Vec<String>,
    write: Vec<String>,
}

impl TryFrom<RawProfile> for SandboxProfile {
    type Error = ProfileError;

    fn try_from(raw: RawProfile) -> Result<Self, ProfileError> {
        Ok(Self::new(raw.read, raw.write, raw.exec, raw.connect)?.with_degraded(raw.degraded))
    }
}

impl SandboxProfile {
    /// A profile from its lists, checked and put in canonical order.
    pub fn new(
        read: Vec<String>,
        write: Vec<String>,
        exec: Vec<String>,
        connect: Vec<u16>,
    ) -> Result<Self, ProfileError> {
        let profile = Self {
            connect: canonical(connect)?,
            degraded: false,
            exec: canonical(exec)?,
            read: canonical(read)?,
            write: canonical(write)?,
        };
        for path in profile.read.iter().chain(&profile.exec) {
            check_path(path, false)?;
        }
        for path in &profile.write {
            check_path(path, true)?;
        }
        if profile.connect.contains(&0) {
            return Err(ProfileError::BadPort("0".into()));
        }
        Ok(profile)
    }

    /// The default profile: read and execute the system's standard paths, read `/etc` and the
    /// random and zero devices, write only the private temporary directory and `/dev/null`,
    /// no network.
    pub fn default_profile() -> Self {
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Self {
            connect: Vec::new(),
            degraded: false,
            exec: owned(&DEFAULT_EXEC),
            read: owned(&DEFAULT_READ),
            write: owned(&DEFAULT_WRITE),
        }
    }

    /// Readable paths.
    pub fn read(&self) -> &[String] {
        &self.read
    }

    /// Writable paths (`@tmp`: the private temporary directory).
    pub fn write(&self) -> &[String] {
        &self.write
    }

    /// Executable paths.
    pub fn exec(&self) -> &[String] {
        &self.exec
    }

    /// TCP ports the command may connect to; empty means no network.
    pub fn connect(&self) -> &[u16] {
        &self.connect
    }

    /// `self`, granting (or not) a run the kernel cannot wholly enforce.
    pub fn with_degraded(mut self, degraded: bool) -> Self {
        self.degraded = degraded;
        self
    }

    /// Whether the command may run where the kernel cannot enforce the whole profile.
    pub fn allows_degraded(&self) -> bool {
        self.degraded
    }

    /// Whether the profile grants the private temporary directory.
    pub fn wants_private_tmp(&self) -> bool {
        self.write.iter().any(|w| w == PRIVATE_TMP)
    }

    /// SHA-256 (lowercase hex) of the canonical JSON of the profile.
    pub fn sha256(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        crate::Digest32::sha256(&bytes).to_hex()
    }

    /// The profile a permit's annotations grant: `@sandbox_base` (`default`, the default, or
    /// `empty`) plus the comma-separated lists of `@sandbox_read`, `@sandbox_write`,
    /// `@sandbox_exec` and `@sandbox_connect` (ports, or `none`), and `@sandbox_degraded`
    /// (`allow`, or `refuse`, the default). Annotations that do not start with `sandbox_` are
    /// ignored; an unknown `sandbox_*` one is an error (fail closed).
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Result<Self, ProfileError> {
        let mut profile = Self::default_profile();
        let (mut read, mut write, mut exec, mut connect) = (vec![], vec![], vec![], vec![]);
        let mut degraded = false;
        for (key, value) in annotations {
            let Some(name) = key.strip_prefix(ANNOTATION_PREFIX) else {
                continue;
            };
            let items = value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            match name {
                "base" => match value.trim() {
                    "default" => {}
                    "empty" => profile = Self::default(),
                    other => return Err(ProfileError::BadBase(other.into())),
                },
                "degraded" => match value.trim() {
                    "allow" => degraded = true,
                    "refuse" => degraded = false,
                    other => return Err(ProfileError::BadDegraded(other.into())),
                },
                "read" => read.extend(items),
                "write" => write.extend(items),
                "exec" => exec.extend(items),
                "connect" => {
                    for item in items.filter(|i| i != "none") {
                        connect.push(parse_port(&item)?);
                    }
                }
                _ => return Err(ProfileError::UnknownAnnotation(key.clone())),
            }
        }
        read.extend(profile.read);
        write.extend(profile.write);
        exec.extend(profile.exec);
        connect.extend(profile.connect);
        Ok(Self::new(read, write, exec, connect)?.with_degraded(degraded))
    }

    /// Whether `annotations` say anything about the sandbox.
    pub fn annotated(annotations: &BTreeMap<String, String>) -> bool {
        annotations.keys().any(|k| k.starts_with(ANNOTATION_PREFIX))
    }

    /// What every profile of `profiles` grants: the entries they all hold (exact matches).
    /// Used when several permits decide, so that no single permit is widened by another.
    pub fn intersection(profiles: &[Self]) -> Option<Self> {
        let (first, rest) = profiles.split_first()?;
        let keep = |list: &[String], pick: fn(&Self) -> &[String]| -> Vec<String> {
            list.iter()
                .filter(|e| rest.iter().all(|p| pick(p).contains(e)))
                .cloned()
                .collect()
        };
        Some(Self {
            connect: first
                .connect
                .iter()
                .copied()
                .filter(|c| rest.iter().all(|p| p.connect.contains(c)))
                .collect(),
            degraded: first.degraded && rest.iter().all(|p| p.degraded),
            exec: keep(&first.exec, Self::exec),
            read: keep(&first.read, Self::read),
            write: keep(&first.write, Self::write),
        })
    }

    /// Whether every grant of `self` is within `granted`: each readable path beneath a path
    /// `granted` lets it read (read, write or exec), each writable path beneath a writable
    /// one, each executable path beneath an executable one, each port granted. `Err` names
    /// the first entry that is wider.
    pub fn check_within(&self, granted: &Self) -> Result<(), ProfileError> {
        let wider = |what: &str, entry: &str| Err(ProfileError::Wider(format!("{what} `{entry}`")));
        for path in &self.read {
            let readable = granted
                .read
                .iter()
                .chain(&granted.write)
                .chain(&granted.exec);
            if !readable.clone().any(|g| beneath(path, g)) {
                return wider("read", path);
            }
        }
        for path in &self.write {
            if !granted.write.iter().any(|g| beneath(path, g)) {
                return wider("write", path);
            }
        }
        for path in &self.exec {
            if !granted.exec.iter().any(|g| beneath(path, g)) {
                return wider("exec", path);
            }
        }
        for port in &self.connect {
            if !granted.connect.contains(port) {
                return wider("connect", &port.to_string());
            }
        }
        if self.degraded && !granted.degraded {
            return wider("degraded", "allow");
        }
        Ok(())
    }

    /// `self` narrowed by the caller: each list given replaces the granted one, and must be
    /// within it (a wider request is refused); lists not given stay as granted.
    pub fn narrowed(&self, request: &Narrowing) -> Result<Self, ProfileError> {
        let pick = |asked: &Option<Vec<String>>, granted: &[String]| {
            asked.clone().unwrap_or_else(|| granted.to_vec())
        };
        let narrowed = Self::new(
            pick(&request.read, &self.read),
            pick(&request.write, &self.write),
            pick(&request.exec, &self.exec),
            request
                .connect
                .clone()
                .unwrap_or_else(|| self.connect.clone()),
        )?
        .with_degraded(self.degraded);
        narrowed.check_within(self)?;
        Ok(narrowed)
    }
}

/// What a caller asks to narrow a granted profile to: each list given replaces the granted
/// one (`connect: Some(vec![])` turns the network off).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Narrowing {
    /// Readable paths.
    pub read: Option<Vec<String>>,
    /// Writable paths.
    pub write: Option<Vec<String>>,
    /// Executable paths.
    pub exec: Option<Vec<String>>,
    /// TCP ports.
    pub connect: Option<Vec<u16>>,
}

impl Narrowing {
    /// True when nothing is narrowed.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// `path` is `base` or beneath it, component by component (`/srv/outside` is not beneath
/// `/srv/out`). `@tmp` is beneath itself only.
pub fn beneath(path: &str, base: &str) -> bool {
    if path == PRIVATE_TMP || base == PRIVATE_TMP {
        return path == base;
    }
    Path::new(path).starts_with(Path::new(base))
}

fn parse_port(text: &str) -> Result<u16, ProfileError> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(ProfileError::BadPort(text.chars().take(20).collect())),
    }
}

fn canonical<T: Ord>(mut list: Vec<T>) -> Result<Vec<T>, ProfileError> {
    list.sort();
    list.dedup();
    if list.len() > MAX_ENTRIES {
        return Err(ProfileError::TooMany);
    }
    Ok(list)
}

fn check_path(path: &str, writable: bool) -> Result<(), ProfileError> {
    if path == PRIVATE_TMP {
        return if writable {
            Ok(())
        } else {
            Err(ProfileError::MisplacedTmp)
        };
    }
    let bad = || ProfileError::BadPath(path.chars().take(200).collect());
    if path.len() > MAX_PATH_BYTES || path.chars().any(char::is_control) {
        return Err(bad());
    }
    if !path.starts_with('/') || (path.len() > 1 && path.ends_with('/')) || path.contains("//") {
        return Err(bad());
    }
    let normal = Path::new(path)
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !normal || path.split('/').any(|c| c == "." || c == "..") {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
#[path = "sandbox_tests.rs"]
mod tests;
