//! Real implementations of the custody interfaces for the end-to-end tests: a local AWS KMS
//! (moto's server, see `zt_test_support::moto`), a TCP relay that can cut the control plane off
//! from it, and a SoftHSM2 token made for the test.
#![allow(
    dead_code,
    reason = "helpers shared by the custody tests; not every one uses each"
)]

use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

pub(crate) use zt_test_support::moto::Moto;

/// A TCP relay to `127.0.0.1:upstream` that can be cut: while cut, open connections are shut
/// and new ones closed at once, as when the KMS endpoint is unreachable.
pub(crate) struct Relay {
    pub port: u16,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    pub(crate) fn start(upstream: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::<TcpStream>::new()));
        let (cut2, open2) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if cut2.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                {
                    let mut open = open2.lock().unwrap();
                    open.push(client.try_clone().unwrap());
                    open.push(server.try_clone().unwrap());
                }
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Relay { port, cut, open }
    }

    /// Cuts (`true`) or restores (`false`) the connection to the KMS.
    pub(crate) fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            for stream in self.open.lock().unwrap().drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

/// The SoftHSM2 module, if installed.
fn softhsm_module() -> Result<String, String> {
    zt_test_support::binary(&[
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    ])
}

/// A SoftHSM2 token made for one test (its own config and token directory), holding P-256
/// key pairs made on the token.
pub(crate) struct SoftHsm {
    pub dir: tempfile::TempDir,
    pub module: String,
    pub conf: PathBuf,
}

pub(crate) const TOKEN: &str = "zt-test";
pub(crate) const PIN: &str = "5678";

impl SoftHsm {
    /// Initializes a token labelled [`TOKEN`] with user PIN [`PIN`] and makes a P-256 key
    /// pair for each of `keys` (labels), or skips.
    pub(crate) fn create(keys: &[&str]) -> Option<SoftHsm> {
        let module = softhsm_module();
        if !zt_test_support::service_or_skip(
            "SoftHSM2 (apt-get install softhsm2)",
            module.clone().map(|_| ()),
        ) {
            return None;
        }
        let module = module.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        init_token(&module, &conf, keys);
        Some(SoftHsm { dir, module, conf })
    }

    /// `--signer` for the key `label`.
    pub(crate) fn signer(&self, label: &str) -> String {
        format!("pkcs11:module={};token={TOKEN};key={label}", self.module)
    }

    /// Makes the token stop answering, as a network HSM that hangs: another process takes
    /// POSIX (`fcntl`) write locks on every file of the token, which SoftHSM2 waits for
    /// without a timeout when it reads or refreshes an object (`C_Sign` included). Held until
    /// the returned [`Hang`] is released or dropped; `None` (skip) without a Python.
    pub(crate) fn hang(&self) -> Option<Hang> {
        let python = std::env::var("ZT_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = "import fcntl, os, sys\n\
            held = []\n\
            for root, _, files in os.walk(sys.argv[1]):\n\
            \x20   for name in files:\n\
            \x20       f = open(os.path.join(root, name), 'r+b')\n\
            \x20       fcntl.lockf(f, fcntl.LOCK_EX)\n\
            \x20       held.append(f)\n\
            print(len(held), flush=True)\n\
            sys.stdin.read()\n";
        let mut child = match Command::new(&python)
            .arg("-c")
            .arg(script)
            .arg(self.dir.path().join("tokens"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                zt_test_support::service_or_skip(
                    "Python 3 (to hold the token's locks)",
                    Err(e.to_string()),
                );
                return None;
            }
        };
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let held: usize = line.trim().parse().unwrap_or(0);
        assert!(held > 0, "no token file locked: {line:?}");
        Some(Hang { child })
    }

    /// The environment of a `zt serve` using this token.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SOFTHSM2_CONF", self.conf.display().to_string()),
            ("ZT_PKCS11_PIN", PIN.to_string()),
        ]
    }
}

/// Initializes the token with `softhsm2-util` and makes the key pairs in a child process (this
/// test binary, running `custody_make_keys`): SoftHSM2 reads `SOFTHSM2_CONF` once per process,
/// and every test has its own token directory.
fn init_token(module: &str, conf: &Path, keys: &[&str]) {
    let status = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            TOKEN,
            "--so-pin",
            "1234",
            "--pin",
            PIN,
        ])
        .env("SOFTHSM2_CONF", conf)
        .stdout(Stdio::null())
        .status()
        .expect("softhsm2-util");
    assert!(status.success());
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "custody::custody_make_keys",
            "--nocapture",
            "--include-ignored",
        ])
        .env("SOFTHSM2_CONF", conf)
        .env("ZT_TEST_SOFTHSM_MODULE", module)
        .env("ZT_TEST_SOFTHSM_KEYS", keys.join(","))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "making keys on the token failed");
}

/// Run in a child process by [`init_token`]: makes the key pairs named in
/// `ZT_TEST_SOFTHSM_KEYS` on the token of `SOFTHSM2_CONF`.
pub(crate) fn make_keys_in_child() {
    let Ok(module) = std::env::var("ZT_TEST_SOFTHSM_MODULE") else {
        return;
    };
    let keys = std::env::var("ZT_TEST_SOFTHSM_KEYS").unwrap();
    let context = Pkcs11::new(module).unwrap();
    context
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = context
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| context.get_token_info(*s).unwrap().label().trim_end() == TOKEN)
        .unwrap();
    let session = context.open_rw_session(slot).unwrap();
    session
        .login(UserType::User, Some(&AuthPin::from(PIN.to_string())))
        .unwrap();
    // prime256v1: OID 1.2.840.10045.3.1.7, DER-encoded.
    let p256 = vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    for label in keys.split(',') {
        let public = [
            Attribute::Token(true),
            Attribute::Verify(true),
            Attribute::EcParams(p256.clone()),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        session
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            .unwrap();
    }
}

/// Whether `pkcs11-tool` (OpenSC) is installed; skips (or fails, when services are required)
/// when it is not.
pub(crate) fn pkcs11_tool_or_skip() -> bool {
    let probe = Command::new("pkcs11-tool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|_| ())
        .map_err(|e| format!("pkcs11-tool: {e}"));
    zt_test_support::service_or_skip("pkcs11-tool (apt-get install opensc)", probe)
}

impl SoftHsm {
    fn tokens(&self) -> PathBuf {
        self.dir.path().join("tokens")
    }

    fn backup_dir(&self) -> PathBuf {
        self.dir.path().join("tokens-backup")
    }

    /// Copies the token's files aside, as an HSM's backup.
    pub(crate) fn back_up(&self) {
        copy_dir(&self.tokens(), &self.backup_dir());
    }

    /// Runs `pkcs11-tool` logged in to the token with `pin`, from another process (every
    /// process using the token sees what it does); whether it succeeded, and its stderr.
    pub(crate) fn pkcs11_tool(&self, pin: &str, args: &[&str]) -> (bool, String) {
        let out = Command::new("pkcs11-tool")
            .args(["--module", &self.module, "--token-label", TOKEN, "--login"])
            .args(["--pin", pin])
            .args(args)
            .env("SOFTHSM2_CONF", &self.conf)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn pkcs11_tool_ok(&self, pin: &str, args: &[&str]) {
        let (ok, stderr) = self.pkcs11_tool(pin, args);
        assert!(ok, "pkcs11-tool {args:?}: {stderr}");
    }

    /// Destroys the private key `label` on the token, as an HSM that lost its key.
    pub(crate) fn destroy_private_key(&self, label: &str) {
        self.destroy_key(PIN, label, "privkey");
    }

    /// Destroys the `kind` (`privkey`, `pubkey`) object `label`, logged in with `pin`.
    pub(crate) fn destroy_key(&self, pin: &str, label: &str, kind: &str) {
        self.pkcs11_tool_ok(pin, &["--delete-object", "--type", kind, "--label", label]);
    }

    /// Makes a new P-256 key pair labelled `label` on the token, logged in with `pin`.
    pub(crate) fn generate_key(&self, pin: &str, label: &str) {
        self.pkcs11_tool_ok(
            pin,
            &[
                "--keypairgen",
                "--key-type",
                "EC:prime256v1",
                "--usage-sign",
                "--label",
                label,
            ],
        );
    }

    /// Changes the user PIN from `old` to `new`.
    pub(crate) fn change_pin(&self, old: &str, new: &str) {
        self.pkcs11_tool_ok(old, &["--change-pin", "--new-pin", new]);
    }

    /// Puts the token's files back from [`Self::back_up`], as an HSM restored from backup.
    pub(crate) fn restore(&self) {
        std::fs::remove_dir_all(self.tokens()).unwrap();
        copy_dir(&self.backup_dir(), &self.tokens());
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The process holding a token's locks (see [`SoftHsm::hang`]).
pub(crate) struct Hang {
    child: std::process::Child,
}

impl Hang {
    /// Lets the token answer again.
    pub(crate) fn release(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Hang {
    fn drop(&mut self) {
        self.stop();
    }
}
