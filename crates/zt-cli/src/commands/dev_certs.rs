//! `zt dev-certs`: a development PKI in one command. A CA, a server certificate for this
//! machine's names (signed by the CA, so standard WebPKI validation accepts it), and one
//! client certificate (X.509-SVID) per SPIFFE ID. For trying TLS and workload identity
//! locally, and for tests; never for production (the CA key sits beside its certificates).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::exit::Exit;

/// `zt dev-certs` arguments.
#[derive(Args, Debug)]
pub(crate) struct DevCertsArgs {
    /// Directory to write into (created, mode 0700); it must not hold a `ca.pem` yet.
    #[arg(long, value_name = "DIR", default_value = "./zt-dev-certs")]
    pub out_dir: PathBuf,
    /// A name of the server (DNS name or IP address; repeatable).
    #[arg(long = "host", value_name = "NAME", default_values = ["localhost", "127.0.0.1", "::1"])]
    pub hosts: Vec<String>,
    /// A SPIFFE ID to issue a client certificate for (repeatable); the files are named after
    /// its path (`spiffe://zt.local/agent/dev` → `agent-dev.pem`, `agent-dev.key`).
    #[arg(
        long = "spiffe-id",
        value_name = "SPIFFE_ID",
        default_values = ["spiffe://zt.local/agent/dev", "spiffe://zt.local/admin/dev"]
    )]
    pub spiffe_ids: Vec<String>,
}

/// Runs `zt dev-certs`.
pub(crate) fn run(args: DevCertsArgs) -> Exit {
    match make(&args) {
        Ok(summary) => {
            println!("{summary}");
            Exit::Success
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            Exit::Failure
        }
    }
}

fn make(args: &DevCertsArgs) -> anyhow::Result<String> {
    let dir = &args.out_dir;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create `{}`", dir.display()))?;
    if dir.join("ca.pem").exists() {
        anyhow::bail!(
            "`{}` already holds a ca.pem: choose another --out-dir or remove it",
            dir.display()
        );
    }
    let mut clients = Vec::new();
    for id in &args.spiffe_ids {
        let name = file_stem(id)?;
        if clients.iter().any(|(_, n): &(String, String)| *n == name) {
            anyhow::bail!("two --spiffe-id values make the file name `{name}`");
        }
        clients.push((id.clone(), name));
    }

    let ca_key = KeyPair::generate()?;
    let ca_key_pem = ca_key.serialize_pem();
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
        .distinguished_name
        .push(DnType::CommonName, "zt development CA");
    let ca = CertifiedIssuer::self_signed(params, ca_key)?;
    write_private(&dir.join("ca.pem"), &ca.pem())?;
    write_private(&dir.join("ca.key"), &ca_key_pem)?;

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(args.hosts.clone())
        .context("a --host is neither a DNS name nor an IP address")?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params
        .distinguished_name
        .push(DnType::CommonName, "zt development server");
    let cert = params.signed_by(&key, &ca)?;
    write_private(&dir.join("server.pem"), &cert.pem())?;
    write_private(&dir.join("server.key"), &key.serialize_pem())?;

    for (id, name) in &clients {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names.push(SanType::URI(
            id.clone()
                .try_into()
                .with_context(|| format!("`{id}` is not a valid uri"))?,
        ));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.distinguished_name.push(DnType::CommonName, id);
        let cert = params.signed_by(&key, &ca)?;
        write_private(&dir.join(format!("{name}.pem")), &cert.pem())?;
        write_private(&dir.join(format!("{name}.key")), &key.serialize_pem())?;
    }

    let d = dir.display();
    let mut summary = format!(
        "wrote a development CA, a server certificate for {} and {} client certificate(s) to `{d}`:\n\
         \n  zt serve --tls-cert {d}/server.pem --tls-key {d}/server.key --client-ca {d}/ca.pem\n\
         \x20 zt audit verify --url https://localhost:3000 --ca {d}/ca.pem --admin-token-file DATA_DIR/admin-token\n",
        args.hosts.join(", "),
        clients.len()
    );
    for (id, name) in &clients {
        summary.push_str(&format!(
            "  {id}: --cert {d}/{name}.pem --key {d}/{name}.key\n"
        ));
    }
    summary.push_str("\nfor development only: the CA's key is in the same directory");
    Ok(summary)
}

/// The file name for a SPIFFE ID: its path, segments joined by `-`, letters, digits, `-` and
/// `_` only (`spiffe://zt.local/agent/dev` → `agent-dev`).
fn file_stem(id: &str) -> anyhow::Result<String> {
    let rest = id
        .strip_prefix("spiffe://")
        .with_context(|| format!("`{id}` is not a spiffe id (spiffe://TRUST_DOMAIN/PATH)"))?;
    let path = rest.split_once('/').map_or("", |(_, path)| path);
    let stem: String = path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .collect::<Vec<_>>()
        .join("-")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if stem.is_empty() {
        anyhow::bail!("`{id}` has no path: a workload's SPIFFE ID is spiffe://TRUST_DOMAIN/PATH");
    }
    Ok(stem)
}

/// Writes `text` to a new file of mode 0600.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create `{}`", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write `{}`", path.display()))
}

#[cfg(test)]
mod tests {
    use super::file_stem;

    #[test]
    fn file_names_from_spiffe_ids() {
        assert_eq!(
            file_stem("spiffe://zt.local/agent/dev").unwrap(),
            "agent-dev"
        );
        assert_eq!(file_stem("spiffe://example.org/a/b.c").unwrap(), "a-b_c");
        assert!(file_stem("https://example.org/a").is_err());
        assert!(file_stem("spiffe://example.org").is_err());
        assert!(file_stem("spiffe://example.org/").is_err());
    }
}
