//! `zt audit export`: the audit log for a SIEM, as OCSF events or as the stored JSON lines
//! (which `zt audit verify --file` still verifies), from any source `verify` reads. Page by
//! page: the log is never held in memory. Exports the records that exist when it starts;
//! `GET /audit/stream` follows new ones (see `docs/SIEM.md`).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{ArgGroup, Args};
use zt_ledger::{AuditStore, PostgresLocation, PostgresStore, SqliteStore};
use zt_siem::Format;

use crate::connection::{self, AdminArgs, TlsArgs};
use crate::exit::Exit;

/// Records read per page.
const PAGE: usize = 1000;

/// `zt audit export` arguments: exactly one source.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("source").required(true).args(["data_dir", "url", "store"])))]
pub(crate) struct ExportArgs {
    /// `ocsf` (OCSF 1.7.0 API Activity events) or `jsonl` (the stored records, verifiable).
    #[arg(long, default_value = "jsonl", value_parser = parse_format)]
    pub format: Format,
    /// The first record to export (its seq).
    #[arg(long, default_value_t = 0, value_name = "SEQ")]
    pub from: u64,
    /// Write here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// A server's data directory (readable while the server runs).
    #[arg(long, env = "ZT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A server's PostgreSQL audit store, as given to `zt serve --store`.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// A running control plane (`GET /audit/records`; an admin credential, --admin-token-file,
    /// unless the server runs with `--auth none`).
    #[arg(long, env = "ZT_URL")]
    pub url: Option<zt_client::BaseUrl>,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse().map_err(|e: zt_siem::SiemError| e.to_string())
}

/// Runs the export. Exit 0 exported, 1 a source or output failure, 2 usage.
pub(super) fn run(args: ExportArgs) -> Exit {
    match export(&args) {
        Ok(count) => {
            eprintln!(
                "exported {count} records from seq {} as {}",
                args.from, args.format
            );
            Exit::Success
        }
        Err(e) => connection::fail(&e),
    }
}

fn export(args: &ExportArgs) -> anyhow::Result<u64> {
    let out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(private_file(path)?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut sink = Sink {
        out: BufWriter::new(out),
        format: args.format,
        count: 0,
    };
    if let Some(dir) = &args.data_dir {
        let mut store = SqliteStore::open_read_only(&SqliteStore::path_in(dir))?;
        export_store(&mut store, args.from, &mut sink)?;
    } else if let Some(url) = &args.store {
        let mut store = PostgresStore::open_read_only(&PostgresLocation::parse(url)?)?;
        export_store(&mut store, args.from, &mut sink)?;
    } else {
        let url = args.url.as_ref().context("no source given")?;
        let server =
            connection::admin_client(url, &args.tls, &args.admin, connection::AUDIT_TIMEOUT)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(export_url(&server, args.from, &mut sink))?;
    }
    sink.out.flush().context("cannot write the export")?;
    Ok(sink.count)
}

/// Where rendered lines go.
struct Sink {
    out: BufWriter<Box<dyn Write>>,
    format: Format,
    count: u64,
}

impl Sink {
    /// Renders and writes at most `take` records of a page starting at `first`; returns how
    /// many it wrote.
    fn page(&mut self, lines: &[String], first: u64, take: usize) -> anyhow::Result<u64> {
        for (seq, line) in (first..).zip(lines.iter().take(take)) {
            let rendered = self
                .format
                .render(line)
                .with_context(|| format!("record {seq} cannot be exported"))?;
            writeln!(self.out, "{rendered}").context("cannot write the export")?;
            self.count += 1;
        }
        Ok(lines.len().min(take) as u64)
    }
}

/// The records `from..` up to the head the store has when the export starts.
fn export_store(store: &mut dyn AuditStore, from: u64, sink: &mut Sink) -> anyhow::Result<()> {
    let end = store.head()?.map_or(0, |h| h.seq + 1);
    let mut next = from;
    while next < end {
        let lines = store.read(next, PAGE)?;
        if lines.is_empty() {
            break;
        }
        next += sink.page(&lines, next, remaining(next, end))?;
    }
    reached(next, end)
}

async fn export_url(
    server: &zt_client::ControlPlane,
    from: u64,
    sink: &mut Sink,
) -> anyhow::Result<()> {
    let end = server.audit_head().await?.records;
    let mut next = from;
    while next < end {
        let lines = server.audit_records(next, PAGE).await?;
        if lines.is_empty() {
            break;
        }
        next += sink.page(&lines, next, remaining(next, end))?;
    }
    reached(next, end)
}

/// The export file: the whole audit content, so 0600 like the log it comes from (an existing
/// file is made 0600 too), and never through a symbolic link someone else placed there.
fn private_file(path: &Path) -> anyhow::Result<File> {
    let shown = path.display();
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        anyhow::bail!("`{shown}` is a symbolic link; give the file itself");
    }
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create `{shown}`"))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make `{shown}` private"))?;
    Ok(file)
}

/// Refuses an export that ended before the head it set out to reach.
fn reached(next: u64, end: u64) -> anyhow::Result<()> {
    if next < end {
        anyhow::bail!("the log ended at seq {next}, before its head {end} when the export began");
    }
    Ok(())
}

fn remaining(next: u64, end: u64) -> usize {
    usize::try_from(end.saturating_sub(next)).unwrap_or(usize::MAX)
}
