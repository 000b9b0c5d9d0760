use super::*;
use crate::auth::admin_set::AdminTokenSet;
use crate::auth::admin_token_file;
use crate::reloadable::ReloadedSetting;

const ALICE: &str = "zt_admin_Qm9iIGlzIGEgZ29vZCByZXZpZXdlci4gQWxpY2UgdG9v";
const BOB: &str = "zt_admin_c2Vjb25kLWFkbWluLXRva2VuLWZvci10ZXN0cy0xMjM0";

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn creates_a_private_file_with_one_strong_admin() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(ADMIN_TOKEN_FILE_NAME);
    let tokens = AdminTokens::load_or_create(&path).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let token = text.split_whitespace().nth(1).unwrap();
    assert_eq!(check_strength(token), Ok(()));
    assert_eq!(tokens.name_for(token), Some("admin"));
    assert_eq!(tokens.name_for("zt_admin_wrong"), None);
}

#[test]
fn reads_named_tokens_and_refuses_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admins");
    write(
        &path,
        &format!("# admins\nalice {ALICE}\nbob {BOB}\n"),
        0o600,
    );
    let tokens = AdminTokens::load_or_create(&path).unwrap();
    assert_eq!(tokens.name_for(ALICE), Some("alice"));
    assert_eq!(tokens.name_for(BOB), Some("bob"));
    assert_eq!(
        tokens.names().into_iter().collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    write(&path, &format!("alice {ALICE}\n"), 0o644);
    assert!(matches!(
        AdminTokens::load(&path),
        Err(AdminTokenError::Permissions(_))
    ));
    write(&path, &format!("alice {ALICE}\nalice {BOB}\n"), 0o600);
    assert!(matches!(
        AdminTokens::load(&path),
        Err(AdminTokenError::Format(_, 2))
    ));
    write(&path, &format!("alice {ALICE}\nbob {ALICE}\n"), 0o600);
    assert!(matches!(
        AdminTokens::load(&path),
        Err(AdminTokenError::SharedToken(_, 2, _))
    ));
    write(&path, "a b c\n", 0o600);
    assert!(matches!(
        AdminTokens::load(&path),
        Err(AdminTokenError::Format(_, 1))
    ));
    write(&path, "# nothing\n", 0o600);
    assert!(matches!(
        AdminTokens::load(&path),
        Err(AdminTokenError::Empty(_))
    ));
}

#[test]
fn weak_tokens_refuse_the_file_and_name_the_admin() {
    for weak in [
        "x",
        "zt_admin_test_alice",
        "admin_Qm9iIGlzIGEgZ29vZCByZXZpZXdlci4gQWxpY2UgdG9v",
        "zt_admin_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "zt_admin_abcdabcdabcdabcdabcdabcdabcdabcdabcd",
        "zt_admin_Qm9iIGlzIGEgZ29vZCByZXZpZXdlci4gQWxpY2U=dG9v",
    ] {
        assert!(check_strength(weak).is_err(), "{weak}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admins");
        write(&path, &format!("alice {ALICE}\nbob {weak}\n"), 0o600);
        let error = AdminTokens::load(&path).unwrap_err();
        assert!(
            matches!(&error, AdminTokenError::Weak { line: 2, name, .. } if name == "bob"),
            "{error}"
        );
        // The message names the file; its random temporary path may contain a short token
        // such as `x`, so only the rest of the message is checked.
        let message = error.to_string().replace(&path.display().to_string(), "");
        assert!(!message.contains(weak), "never echo a token");
    }
    assert_eq!(check_strength(ALICE), Ok(()));
}

#[test]
fn a_token_written_where_the_name_goes_is_never_repeated() {
    // `TOKEN NAME`, or a token with a comment after it: the token is the line's first word.
    for line in [
        format!("{ALICE} alice"),
        format!("{ALICE} #note"),
        format!("{ALICE} #the first admin"),
        format!("{ALICE} {BOB}"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admins");
        write(
            &path,
            &format!(
                "bob {BOB}
{line}
"
            ),
            0o600,
        );
        let error = AdminTokens::load(&path).unwrap_err();
        assert!(
            matches!(
                error,
                AdminTokenError::BadName(_, 2) | AdminTokenError::Format(_, 2)
            ),
            "{line}: {error}"
        );
        let message = error.to_string();
        assert!(!message.contains(&ALICE[9..]), "{message}");
        assert!(!message.contains(&BOB[9..]), "{message}");
    }
    assert!(check_name("zt_admin_x").is_err());
    let entry = Entry {
        name: "alice".into(),
        token: ALICE.into(),
        line: 1,
    };
    assert!(!format!("{entry:?}").contains(&ALICE[9..]), "{entry:?}");
    for reserved in ["zt-server", "unauthenticated-admin", "policy-file"] {
        assert!(check_name(reserved).is_err(), "{reserved}");
    }
}

#[test]
fn admin_token_file_edits_keep_the_file_valid_and_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admins");
    let alice = admin_token_file::add(&path, "alice").unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let bob = admin_token_file::add(&path, "bob").unwrap();
    assert!(matches!(
        admin_token_file::add(&path, "bob"),
        Err(AdminTokenError::NameTaken(..))
    ));
    for bad in ["", "two words", "#x", "tab\tname"] {
        assert!(matches!(
            admin_token_file::add(&path, bad),
            Err(AdminTokenError::InvalidName(..))
        ));
    }
    assert_eq!(admin_token_file::list(&path).unwrap(), ["alice", "bob"]);
    let tokens = AdminTokens::load(&path).unwrap();
    assert_eq!(tokens.name_for(&alice), Some("alice"));
    assert_eq!(tokens.name_for(&bob), Some("bob"));

    admin_token_file::remove(&path, "alice").unwrap();
    assert_eq!(admin_token_file::list(&path).unwrap(), ["bob"]);
    assert_eq!(AdminTokens::load(&path).unwrap().name_for(&alice), None);
    assert!(matches!(
        admin_token_file::remove(&path, "alice"),
        Err(AdminTokenError::UnknownName(..))
    ));
    assert!(matches!(
        admin_token_file::remove(&path, "bob"),
        Err(AdminTokenError::LastAdmin(..))
    ));
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn a_refused_reload_keeps_the_admins_in_force_and_reports_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admins");
    write(&path, &format!("alice {ALICE}\n"), 0o600);
    let set = AdminTokenSet::new(AdminTokens::load(&path).unwrap());
    write(&path, &format!("alice {ALICE}\nbob {BOB}\n"), 0o600);
    set.reload_if_changed();
    assert_eq!(set.name_for(BOB).as_deref(), Some("bob"));
    assert_eq!(set.last_error(), None);

    write(&path, &format!("alice {ALICE}\nbob x\n"), 0o600);
    set.reload("SIGHUP");
    assert_eq!(
        set.name_for(BOB).as_deref(),
        Some("bob"),
        "the old set stays"
    );
    assert_eq!(set.name_for("x"), None);
    assert!(set.last_error().unwrap().contains("weak"));

    write(&path, &format!("alice {ALICE}\n"), 0o600);
    set.reload_if_changed();
    assert_eq!(set.name_for(BOB), None, "bob is removed");
    assert_eq!(set.last_error(), None);
}
