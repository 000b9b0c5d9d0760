//! The command's environment: nothing of the broker's but `PATH`, `HOME`, `LANG` and the
//! variables the caller names (`--pass-env`), plus `TMPDIR` for the private temporary
//! directory. The broker's own settings (`ZT_*`: its token, its TLS key paths) can never be
//! passed.

use std::ffi::OsString;
use std::path::Path;

use crate::BrokerError;

/// Always passed when set.
pub const ALWAYS: [&str; 3] = ["PATH", "HOME", "LANG"];
/// `PATH` when the broker has none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// The prefix of the broker's own settings, never passed.
pub const BROKER_PREFIX: &str = "ZT_";

/// Refuses a `--pass-env` list that names a broker setting or is not a list of names.
pub fn check_pass_env(names: &[String]) -> Result<(), BrokerError> {
    for name in names {
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(BrokerError::Usage(format!(
                "`{name}` is not an environment variable name"
            )));
        }
        if name.to_ascii_uppercase().starts_with(BROKER_PREFIX) {
            return Err(BrokerError::Usage(format!(
                "`{name}` is the broker's own setting and is never passed to the command"
            )));
        }
    }
    Ok(())
}

/// The `PATH` the command's program is looked up in: the one [`child_env`] gives it from the
/// broker's environment (the broker's `PATH`, else [`DEFAULT_PATH`]).
pub(crate) fn command_path() -> OsString {
    std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into())
}

/// The command's environment, from the broker's `current` one.
pub fn child_env(
    current: impl Iterator<Item = (OsString, OsString)>,
    pass: &[String],
    tmp: Option<&Path>,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = current
        .filter(|(k, _)| {
            let k = k.to_string_lossy();
            (ALWAYS.contains(&k.as_ref()) || pass.iter().any(|p| *p == k))
                && !k.to_ascii_uppercase().starts_with(BROKER_PREFIX)
        })
        .collect();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    if let Some(tmp) = tmp {
        env.retain(|(k, _)| k != "TMPDIR");
        env.push(("TMPDIR".into(), tmp.into()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn only_the_standard_and_named_variables_pass_and_never_the_brokers() {
        let current = vars(&[
            ("PATH", "/bin"),
            ("HOME", "/h"),
            ("SECRET", "s"),
            ("ZT_TOKEN", "t"),
            ("KEEP", "k"),
        ]);
        let env = child_env(
            current.into_iter(),
            &["KEEP".into()],
            Some(Path::new("/tmp/x")),
        );
        let names: Vec<_> = env
            .iter()
            .map(|(k, _)| k.to_string_lossy().to_string())
            .collect();
        assert_eq!(names, ["PATH", "HOME", "KEEP", "TMPDIR"]);
        assert!(check_pass_env(&["ZT_TOKEN".into()]).is_err());
        assert!(check_pass_env(&["zt_client_key".into()]).is_err());
        assert!(check_pass_env(&["A=B".into()]).is_err());
        assert!(check_pass_env(&["LC_ALL".into()]).is_ok());
    }

    #[test]
    fn a_default_path_is_given_when_the_broker_has_none() {
        let env = child_env(std::iter::empty(), &[], None);
        assert_eq!(env, vars(&[("PATH", DEFAULT_PATH)]));
    }
}
