//! `zt serve --config zt.toml`: a TOML file whose keys are `zt serve`'s flags without the
//! dashes (`listen = "127.0.0.1:3000"`, `single-admin = true`, `admin-spiffe-id = ["…"]`).
//! Flags and environment variables override the file; the file overrides the defaults.
//!
//! The file's values become flags appended to the command line, but only for flags given
//! neither on the command line nor in the environment, and the whole line is then parsed again
//! by the one CLI definition: every flag has a key by construction, every value goes through
//! the same validation as on the command line, and a key that is no flag is refused (exit 2).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

/// The name of `--config`'s argument id in `zt serve`.
const CONFIG: &str = "config";

/// `argv` with the `--config` file's settings added as flags. Exits (2) on a usage error, as
/// clap does.
pub(crate) fn expand(command: &Command, argv: Vec<OsString>) -> Vec<OsString> {
    match try_expand(command, argv) {
        Ok(argv) => argv,
        Err(e) => e.exit(),
    }
}

fn try_expand(command: &Command, argv: Vec<OsString>) -> Result<Vec<OsString>, clap::Error> {
    let matches = command.clone().try_get_matches_from(&argv)?;
    let Some(("serve", serve)) = matches.subcommand() else {
        return Ok(argv);
    };
    let Some(path) = serve.get_one::<PathBuf>(CONFIG) else {
        return Ok(argv);
    };
    let Some(serve_command) = command.find_subcommand("serve") else {
        return Ok(argv);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("--config `{}`: {e}", path.display())))?;
    let mut argv = argv;
    argv.extend(flags_from(&text, path, serve_command, serve)?);
    Ok(argv)
}

/// The flags a config file's text stands for, leaving out those `given` already.
fn flags_from(
    text: &str,
    path: &Path,
    serve: &Command,
    given: &ArgMatches,
) -> Result<Vec<OsString>, clap::Error> {
    let shown = path.display();
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| usage(format!("--config `{shown}`: {}", e.message())))?;
    let mut flags = Vec::new();
    for (key, value) in &table {
        let arg = serve
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && a.get_id() != CONFIG)
            .filter(|a| a.get_action().takes_values() || is_switch(a))
            .ok_or_else(|| {
                usage(format!(
                    "--config `{shown}`: unknown key `{key}` (the keys are the flags of `zt serve`, without `--`)"
                ))
            })?;
        let source = given.value_source(arg.get_id().as_str());
        if matches!(
            source,
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let values = match value {
            toml::Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        for value in values {
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) if is_switch(arg) => {
                    if *b {
                        flags.push(OsString::from(format!("--{key}")));
                    }
                    continue;
                }
                toml::Value::Boolean(b) => b.to_string(),
                _ => {
                    return Err(usage(format!(
                        "--config `{shown}`: `{key}` must be a string, a number, a boolean or an array of them"
                    )))
                }
            };
            if is_switch(arg) {
                return Err(usage(format!(
                    "--config `{shown}`: `{key}` is a switch: write `{key} = true` or `{key} = false`"
                )));
            }
            flags.push(OsString::from(format!("--{key}={text}")));
        }
    }
    Ok(flags)
}

/// A flag that takes no value (`--single-admin`).
fn is_switch(arg: &clap::Arg) -> bool {
    matches!(arg.get_action(), clap::ArgAction::SetTrue)
}

fn usage(message: String) -> clap::Error {
    clap::Error::raw(ErrorKind::InvalidValue, format!("{message}\n"))
}

#[cfg(test)]
mod tests {
    use clap::{Arg, ArgAction};

    use super::*;

    fn serve() -> Command {
        Command::new("serve")
            .arg(
                Arg::new("config")
                    .long("config")
                    .value_parser(clap::value_parser!(PathBuf)),
            )
            .arg(
                Arg::new("listen")
                    .long("listen")
                    .env("ZT_TEST_CONFIG_LISTEN")
                    .default_value("127.0.0.1:3000"),
            )
            .arg(
                Arg::new("single_admin")
                    .long("single-admin")
                    .action(ArgAction::SetTrue),
            )
            .arg(
                Arg::new("admin_spiffe_id")
                    .long("admin-spiffe-id")
                    .action(ArgAction::Append),
            )
            .arg(
                Arg::new("queue_capacity")
                    .long("queue-capacity")
                    .value_parser(clap::value_parser!(usize)),
            )
    }

    fn flags(text: &str, argv: &[&str]) -> Result<Vec<String>, String> {
        let given = serve().try_get_matches_from(argv).unwrap();
        flags_from(text, Path::new("zt.toml"), &serve(), &given)
            .map(|f| f.into_iter().map(|s| s.into_string().unwrap()).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn keys_become_flags_unless_given() {
        let text = "listen = \"0.0.0.0:4000\"\nsingle-admin = true\nqueue-capacity = 10\n\
                    admin-spiffe-id = [\"spiffe://a/x\", \"spiffe://a/y\"]\n";
        assert_eq!(
            flags(text, &["serve"]).unwrap(),
            [
                "--admin-spiffe-id=spiffe://a/x",
                "--admin-spiffe-id=spiffe://a/y",
                "--listen=0.0.0.0:4000",
                "--queue-capacity=10",
                "--single-admin"
            ]
        );
        // A flag on the command line wins over the file.
        let out = flags(text, &["serve", "--listen", "127.0.0.1:1"]).unwrap();
        assert!(!out.iter().any(|f| f.starts_with("--listen")), "{out:?}");
        assert_eq!(
            flags("single-admin = false", &["serve"]).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn unknown_keys_and_wrong_shapes_are_refused() {
        let e = flags("listne = \"x\"", &["serve"]).unwrap_err();
        assert!(
            e.contains("unknown key `listen`") || e.contains("unknown key `listne`"),
            "{e}"
        );
        let e = flags("config = \"other.toml\"", &["serve"]).unwrap_err();
        assert!(e.contains("unknown key `config`"), "{e}");
        let e = flags("[listen]\nx = 1", &["serve"]).unwrap_err();
        assert!(e.contains("must be a string"), "{e}");
        let e = flags("single-admin = \"yes\"", &["serve"]).unwrap_err();
        assert!(e.contains("is a switch"), "{e}");
        let e = flags("listen = ", &["serve"]).unwrap_err();
        assert!(e.contains("zt.toml"), "{e}");
    }
}
