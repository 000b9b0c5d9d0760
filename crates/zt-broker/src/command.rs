//! The command a decision is asked for: its program, resolved to the file that will run, and a
//! digest of its arguments, written into the decision's context (`context.exec`), so that a
//! policy can say which programs an action may run and the decision record, through its
//! context digest, says exactly which command it allowed. The helper then runs that file, not
//! a name looked up again, and only if its path still leads to it.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use zt_contract::{Digest32, EXEC_ARGS_SHA256, EXEC_CONTEXT_KEY, EXEC_PROGRAM};

/// A command ready to be decided on and run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvedCommand {
    /// What runs, and what the decision names: the real file (absolute, every symlink and `..`
    /// resolved), or, when no file was found, the name as found (the start then fails, with a
    /// receipt, as for any program that cannot start).
    pub program: OsString,
    /// What the command is told it was called (its `argv[0]`): the name as found, so that a
    /// program that reads it (a multi-call binary behind a symlink) behaves as before.
    pub arg0: OsString,
    /// The arguments after the program.
    pub args: Vec<OsString>,
}

impl ResolvedCommand {
    /// `command` (program, then arguments) with its program found as `execvp` would find it:
    /// a name with a `/` made absolute against the working directory, any other name looked
    /// up in `path` (the `PATH` the command will get), the first executable file.
    /// The program is then resolved to its real file: a policy reads the path, and `..` or a
    /// symlink would let a name look like one it allows (`/opt/tools/../../bin/sh` is like
    /// `"/opt/tools/*"`).
    pub(crate) fn resolve(command: &[OsString], path: &OsStr) -> Option<Self> {
        let (name, args) = command.split_first()?;
        let found = if name.as_bytes().contains(&b'/') {
            std::path::absolute(name).ok().map(PathBuf::into_os_string)
        } else {
            lookup(name, path)
        };
        let arg0 = found.unwrap_or_else(|| name.clone());
        let program = std::fs::canonicalize(&arg0)
            .map(PathBuf::into_os_string)
            .unwrap_or_else(|_| arg0.clone());
        Some(Self {
            program,
            arg0,
            args: args.to_vec(),
        })
    }

    /// The command as the helper gets it: `argv[0]`, then the arguments (the program to run
    /// is in its specification).
    pub(crate) fn argv(&self) -> Vec<OsString> {
        std::iter::once(self.arg0.clone())
            .chain(self.args.iter().cloned())
            .collect()
    }

    /// `{"program": "/usr/bin/make", "args_sha256": "…"}`: the program as text (refused if it
    /// is not UTF-8: a policy could not name it) and the SHA-256 of the arguments, each
    /// preceded by its length as 8 bytes big-endian (so `["a b"]` and `["a", "b"]` differ).
    pub(crate) fn context_entry(&self) -> Result<Value, String> {
        let program = self
            .program
            .to_str()
            .ok_or("the program's path is not valid UTF-8, so no policy could name it")?;
        let mut bytes = Vec::new();
        for arg in &self.args {
            let arg = arg.as_bytes();
            bytes.extend_from_slice(&(arg.len() as u64).to_be_bytes());
            bytes.extend_from_slice(arg);
        }
        let mut entry = Map::new();
        entry.insert(EXEC_PROGRAM.into(), program.into());
        entry.insert(
            EXEC_ARGS_SHA256.into(),
            Digest32::sha256(&bytes).to_hex().into(),
        );
        Ok(Value::Object(entry))
    }

    /// `context` with [`EXEC_CONTEXT_KEY`] added; refused if the caller's context holds it
    /// already (which of the two would the policy read?).
    pub(crate) fn added_to(
        &self,
        context: Option<Map<String, Value>>,
    ) -> Result<Map<String, Value>, String> {
        let mut context = context.unwrap_or_default();
        if context.contains_key(EXEC_CONTEXT_KEY) {
            return Err(format!(
                "the context may not hold `{EXEC_CONTEXT_KEY}`: the broker writes the command there"
            ));
        }
        context.insert(EXEC_CONTEXT_KEY.into(), self.context_entry()?);
        Ok(context)
    }
}

/// The first executable regular file named `name` in the directories of `path`.
fn lookup(name: &OsStr, path: &OsStr) -> Option<OsString> {
    path.as_bytes()
        .split(|b| *b == b':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(OsStr::from_bytes(dir)).join(name))
        .find(|candidate| is_executable_file(candidate))
        .and_then(|found| std::path::absolute(found).ok())
        .map(PathBuf::into_os_string)
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn os(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_name_is_found_in_path_and_a_path_made_absolute() {
        let path = OsString::from("/nonexistent:/usr/bin:/bin");
        let env = ResolvedCommand::resolve(&os(&["env", "-i"]), &path).unwrap();
        assert_eq!(env.program, OsString::from("/usr/bin/env"));
        assert_eq!(env.args, os(&["-i"]));
        let missing = ResolvedCommand::resolve(&os(&["no-such-program-x"]), &path).unwrap();
        assert_eq!(missing.program, OsString::from("no-such-program-x"));
        let relative = ResolvedCommand::resolve(&os(&["./run.sh"]), &path).unwrap();
        assert!(Path::new(&relative.program).is_absolute());
        assert!(ResolvedCommand::resolve(&[], &path).is_none());
    }

    #[test]
    fn the_program_is_its_real_file_and_keeps_the_name_it_was_called_by() {
        let path = OsString::from("/usr/bin:/bin");
        let real = std::fs::canonicalize("/usr/bin/true").unwrap();
        let dotted = ResolvedCommand::resolve(&os(&["/usr/bin/../bin/true", "x"]), &path).unwrap();
        assert_eq!(Path::new(&dotted.program), real);
        assert!(!dotted.program.as_bytes().windows(2).any(|w| w == b".."));
        assert_eq!(dotted.arg0, OsString::from("/usr/bin/../bin/true"));
        assert_eq!(dotted.argv(), os(&["/usr/bin/../bin/true", "x"]));
        // A symlink is decided on as the file it leads to.
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("looks-harmless");
        std::os::unix::fs::symlink("/usr/bin/true", &link).unwrap();
        let linked = ResolvedCommand::resolve(&[link.clone().into_os_string()], &path).unwrap();
        assert_eq!(Path::new(&linked.program), real);
        assert_eq!(linked.arg0, link.into_os_string());
    }

    #[test]
    fn the_context_names_the_program_and_binds_the_arguments() {
        let command = |argv: &[&str]| ResolvedCommand {
            program: "/usr/bin/make".into(),
            arg0: "make".into(),
            args: os(argv),
        };
        let entry = command(&["all"]).context_entry().unwrap();
        assert_eq!(entry["program"], "/usr/bin/make");
        let digest = |argv: &[&str]| command(argv).context_entry().unwrap()["args_sha256"].clone();
        assert_ne!(digest(&["a b"]), digest(&["a", "b"]));
        assert_ne!(digest(&["ab"]), digest(&["a", "b"]));
        assert_eq!(digest(&["all"]), digest(&["all"]));

        let mut theirs = Map::new();
        theirs.insert("ticket".into(), json!("T-1"));
        let merged = command(&[]).added_to(Some(theirs.clone())).unwrap();
        assert_eq!(merged["ticket"], "T-1");
        assert_eq!(merged["exec"]["program"], "/usr/bin/make");
        theirs.insert("exec".into(), json!({"program": "/bin/true"}));
        assert!(command(&[]).added_to(Some(theirs)).is_err());
    }
}
