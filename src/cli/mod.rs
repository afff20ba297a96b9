//! The command line: a thin layer over the `sopvault` library.
//!
//! Each subcommand lives in its own file. This module holds what they share:
//! global options, the password sources, progress display, and the single
//! place where errors become one line on stderr and a documented exit code.

/// `println!` for a command's output, through [`write_line`]: evaluates to a
/// `Result` whose error ends the command (`outln!(...)?`).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::sopvault_cli::write_line(format_args!($($arg)*))
    };
}

mod cat;
mod check;
mod config;
pub mod hints;
mod init;
mod key;
mod ls;
mod mirror;
mod mount;
mod progress;
mod prune;
mod repair;
mod restore;
mod snapshot;
mod snapshots;
mod unlock;

use clap::{Parser, Subcommand};
use sopvault::crypto::Password;
use sopvault::repo::lock::{Access, Lock};
use sopvault::repo::{ListAhead, OpenOptions};
use sopvault::{Error, ErrorKind, Repository};
use std::path::PathBuf;

/// Exit codes, documented in README.md.
pub mod exit {
    pub const OK: i32 = 0;
    pub const ERROR: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const INCOMPLETE: i32 = 3;
    pub const STREAM_FAILED: i32 = 4;
    pub const DAMAGED: i32 = 5;
    pub const NO_SPACE: i32 = 6;
    pub const NO_REPOSITORY: i32 = 10;
    pub const LOCKED: i32 = 11;
    pub const WRONG_PASSWORD: i32 = 12;
    pub const INTERRUPTED: i32 = 130;
    /// Standard output was closed by its reader (`| head`): the command
    /// stopped quietly, as if killed by SIGPIPE (128 + 13).
    pub const OUTPUT_CLOSED: i32 = 141;
}

#[derive(Parser)]
#[command(
    name = "sopvault",
    version,
    about = "Encrypted, deduplicating backups of dumps and file trees"
)]
pub struct Cli {
    /// Repository: a directory, or s3://BUCKET/PREFIX (endpoint, region and keys from AWS_* variables)
    #[arg(
        long,
        global = true,
        env = "SOPVAULT_REPO",
        value_name = "DIR|s3://BUCKET/PREFIX"
    )]
    repo: Option<PathBuf>,
    /// Directory for the local index cache (default: $XDG_CACHE_HOME/sopvault or ~/.cache/sopvault)
    #[arg(long, global = true, env = "SOPVAULT_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Keep no cache between runs
    #[arg(long, global = true)]
    no_cache: bool,
    /// Print only errors and warnings
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new repository
    Init(init::Args),
    /// Back up paths and dump streams into one snapshot
    Snapshot(snapshot::Args),
    /// List snapshots
    Snapshots(snapshots::Args),
    /// List files in a snapshot
    Ls(ls::Args),
    /// Restore a snapshot (or parts of it) into a directory
    Restore(restore::Args),
    /// Write one file or stream of a snapshot to standard output
    Cat(cat::Args),
    /// Browse every snapshot as a read-only FUSE file system (foreground, until Ctrl-C)
    Mount(mount::Args),
    /// Verify the repository's structure and, optionally, its data
    Check(check::Args),
    /// Forget snapshots by a retention policy and free their space
    Prune(prune::Args),
    /// Rebuild what can be rebuilt from the repository's own data (`repair index`)
    #[command(subcommand)]
    Repair(repair::RepairCommand),
    /// Copy the repository to a disk or S3 bucket; verify a copy without the key; list mirrors
    Mirror(mirror::Args),
    /// Manage passwords (key files)
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Remove stale locks left by processes that are gone
    Unlock(unlock::Args),
    /// Check the configuration file (sopvault.toml) and show what a run would do
    #[command(subcommand)]
    Config(config::ConfigCommand),
}

pub struct Ctx {
    pub repo_path: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub quiet: bool,
}

impl Ctx {
    pub fn repo_path(&self) -> Result<PathBuf, Error> {
        self.repo_path.clone().ok_or_else(|| {
            Error::Usage(
                "no repository given: use --repo DIR (or s3://BUCKET/PREFIX) or set SOPVAULT_REPO"
                    .into(),
            )
        })
    }

    pub fn open_options(&self) -> OpenOptions {
        OpenOptions {
            cache_dir: self.cache_dir.clone(),
            base_cache_bytes: None,
        }
    }

    /// Opens the repository with the password from the environment or the terminal.
    pub fn open(&self) -> Result<Repository, Error> {
        let (backend, pw) = self.backend_and_password()?;
        Repository::open_backend(backend, &pw, &self.open_options())
    }

    /// The repository's backend, once it is known to hold a repository, and
    /// the password for it.
    fn backend_and_password(
        &self,
    ) -> Result<(std::sync::Arc<dyn sopvault::backend::Backend>, Password), Error> {
        let backend = sopvault::backend::open(&self.repo_path()?)?;
        // Fail fast on a missing repository before asking for a password.
        Repository::probe(backend.as_ref())?;
        Ok((backend, password::current()?))
    }

    /// Prints how the run works around its surroundings (a full disk, an
    /// unusable cache), leaving the damage warnings for the caller to judge.
    pub fn print_notices(&self, repo: &Repository) {
        for n in repo.take_notices() {
            eprintln!("sopvault: warning: {n}");
        }
    }

    /// Prints the notices and what the engine skipped as damaged.
    pub fn print_warnings(&self, repo: &Repository) {
        for w in repo.take_notices().into_iter().chain(repo.take_warnings()) {
            eprintln!("sopvault: warning: {w}");
        }
    }

    /// Warns that a snapshot about to be read is incomplete (files could not
    /// be read when it was taken), and names the newest complete one of its source.
    pub fn warn_if_incomplete(
        &self,
        repo: &Repository,
        id: &sopvault::ids::SnapshotId,
        snap: &sopvault::format::manifest::Snapshot,
    ) {
        if snap.complete {
            return;
        }
        let newest = match repo.find_snapshot(&format!("{}:latest-complete", snap.source)) {
            Ok((cid, c)) => format!(
                "the newest complete one of its source is {} ({})",
                c.name,
                cid.short()
            ),
            Err(_) => "its source has no complete snapshot".into(),
        };
        eprintln!(
            "sopvault: warning: snapshot {} ({}) is incomplete: {} path(s) could not be read when it was taken; {newest}",
            snap.name,
            id.short(),
            snap.summary.errors.len()
        );
    }

    /// Opens the repository and locks it as `access` needs, the lock
    /// taken while the key is derived; see [`Repository::open_locked`].
    pub fn open_locked(
        &self,
        access: Access,
        command: &str,
        ahead: ListAhead,
    ) -> Result<(Repository, Lock), Error> {
        self.open_locked_with(access, command, ahead, &self.open_options())
    }

    /// [`Ctx::open_locked`] for a command that reads one version of its
    /// files (cat, restore): no cache of delta bases, which chunks of one
    /// version never share.
    pub fn open_locked_for_one_version(
        &self,
        access: Access,
        command: &str,
        ahead: ListAhead,
    ) -> Result<(Repository, Lock), Error> {
        let open = OpenOptions {
            base_cache_bytes: Some(0),
            ..self.open_options()
        };
        self.open_locked_with(access, command, ahead, &open)
    }

    fn open_locked_with(
        &self,
        access: Access,
        command: &str,
        ahead: ListAhead,
        open: &OpenOptions,
    ) -> Result<(Repository, Lock), Error> {
        let (backend, pw) = self.backend_and_password()?;
        Repository::open_locked(backend, &pw, open, (access, command), ahead)
    }
}

pub mod password {
    //! Where passwords come from: a file, a command, or a no-echo prompt. Never an argument.
    use sopvault::crypto::Password;
    use sopvault::Error;
    use std::io::IsTerminal;

    fn from_file(var: &str, path: &str) -> Result<Password, Error> {
        use std::os::unix::fs::MetadataExt;
        let cannot = |e: std::io::Error| Error::Usage(format!("{var}={path}: cannot read: {e}"));
        let f = std::fs::File::open(path).map_err(cannot)?;
        let mode = f.metadata().map_err(cannot)?.mode();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut &f, &mut bytes).map_err(cannot)?;
        let pw = finish(bytes, var)?;
        // Like ssh with a private key: a machine secret others can read is refused.
        if mode & 0o077 != 0 && sopvault::format::keyfile::machine_secret(&pw)?.is_some() {
            return Err(Error::Usage(format!(
                "{var}={path} holds a machine secret but is open to group or others (mode {:04o}); run chmod 600 on it",
                mode & 0o7777
            )));
        }
        Ok(pw)
    }

    fn finish(mut bytes: Vec<u8>, source: &str) -> Result<Password, Error> {
        if bytes.ends_with(b"\n") {
            bytes.pop();
            if bytes.ends_with(b"\r") {
                bytes.pop();
            }
        }
        if bytes.is_empty() {
            return Err(Error::Usage(format!("the password from {source} is empty")));
        }
        Ok(Password::new(bytes))
    }

    fn from_command(cmd: &str) -> Result<Password, Error> {
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(cmd)
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| Error::Usage(format!("SOPVAULT_PASSWORD_COMMAND: cannot run: {e}")))?;
        if !out.status.success() {
            return Err(Error::Usage(format!(
                "SOPVAULT_PASSWORD_COMMAND failed with {}",
                out.status
            )));
        }
        finish(out.stdout, "SOPVAULT_PASSWORD_COMMAND")
    }

    fn prompt(text: &str) -> Result<Password, Error> {
        if !std::io::stdin().is_terminal() && !std::io::stderr().is_terminal() {
            return Err(Error::Usage(
                "no password: set SOPVAULT_PASSWORD_FILE or SOPVAULT_PASSWORD_COMMAND, or run on a terminal".into(),
            ));
        }
        let s = rpassword::prompt_password(text)
            .map_err(|e| Error::Usage(format!("cannot read the password: {e}")))?;
        finish(s.into_bytes(), "the terminal")
    }

    /// The password of the repository.
    pub fn current() -> Result<Password, Error> {
        if let Ok(p) = std::env::var("SOPVAULT_PASSWORD_FILE") {
            return from_file("SOPVAULT_PASSWORD_FILE", &p);
        }
        if let Ok(c) = std::env::var("SOPVAULT_PASSWORD_COMMAND") {
            return from_command(&c);
        }
        prompt("repository password: ")
    }

    /// A new password: SOPVAULT_NEW_PASSWORD_FILE, or asked twice on the terminal.
    /// For `init`, the current-password sources serve as well.
    pub fn new_password(for_init: bool) -> Result<Password, Error> {
        if let Ok(p) = std::env::var("SOPVAULT_NEW_PASSWORD_FILE") {
            return from_file("SOPVAULT_NEW_PASSWORD_FILE", &p);
        }
        if for_init
            && (std::env::var_os("SOPVAULT_PASSWORD_FILE").is_some()
                || std::env::var_os("SOPVAULT_PASSWORD_COMMAND").is_some())
        {
            return current();
        }
        let a = prompt("new password: ")?;
        let b = prompt("repeat new password: ")?;
        if a.as_bytes() != b.as_bytes() {
            return Err(Error::Usage("the two passwords differ".into()));
        }
        Ok(a)
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("sopvault"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("sopvault"))
}

fn exit_code(e: &Error) -> i32 {
    match e.kind() {
        ErrorKind::NoRepository => exit::NO_REPOSITORY,
        ErrorKind::Locked => exit::LOCKED,
        ErrorKind::WrongPassword => exit::WRONG_PASSWORD,
        ErrorKind::StreamFailed => exit::STREAM_FAILED,
        ErrorKind::Damaged => exit::DAMAGED,
        ErrorKind::NoSpace => exit::NO_SPACE,
        ErrorKind::Interrupted => exit::INTERRUPTED,
        ErrorKind::OutputClosed => exit::OUTPUT_CLOSED,
        ErrorKind::Usage => exit::USAGE,
        ErrorKind::Other => exit::ERROR,
    }
}

fn install_signal_handlers() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use std::sync::atomic::Ordering;
    for sig in [SIGINT, SIGTERM] {
        // SAFETY: the handler only touches an atomic and calls _exit, both
        // async-signal-safe. The first signal asks the engine to stop cleanly
        // (temporary files and locks removed); a second one exits at once.
        let r = unsafe {
            signal_hook::low_level::register(sig, || {
                if sopvault::interrupt::flag().swap(true, Ordering::SeqCst) {
                    signal_hook::low_level::exit(exit::INTERRUPTED);
                }
            })
        };
        if let Err(e) = r {
            eprintln!("sopvault: warning: cannot install a handler for signal {sig}: {e}");
        }
    }
}

pub fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
        }
    };
    install_signal_handlers();
    let ctx = Ctx {
        repo_path: cli.repo,
        cache_dir: if cli.no_cache {
            None
        } else {
            cli.cache_dir.or_else(default_cache_dir)
        },
        quiet: cli.quiet,
    };
    let result = match cli.command {
        Command::Init(a) => init::run(&ctx, a),
        Command::Snapshot(a) => snapshot::run(&ctx, a),
        Command::Snapshots(a) => snapshots::run(&ctx, a),
        Command::Ls(a) => ls::run(&ctx, a),
        Command::Restore(a) => restore::run(&ctx, a),
        Command::Cat(a) => cat::run(&ctx, a),
        Command::Mount(a) => mount::run(&ctx, a),
        Command::Check(a) => check::run(&ctx, a),
        Command::Prune(a) => prune::run(&ctx, a),
        Command::Repair(c) => repair::run(&ctx, c),
        Command::Mirror(a) => mirror::run(&ctx, a),
        Command::Key(k) => key::run(&ctx, k),
        Command::Unlock(a) => unlock::run(&ctx, a),
        Command::Config(c) => config::run(c),
    };
    match result {
        Ok(code) => code,
        // Whoever closed the pipe wanted no more; like `ls | head`, no message.
        Err(e) if e.kind() == ErrorKind::OutputClosed => exit::OUTPUT_CLOSED,
        Err(e) => {
            eprintln!("sopvault: error: {}", hints::describe(&e));
            exit_code(&e)
        }
    }
}

/// Formats a byte count for people.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn print_json(v: &serde_json::Value) -> Result<(), Error> {
    outln!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON values serialise")
    )
}

/// Writes one line of a command's output to standard output. A closed
/// standard output (its reader is gone, as in `sopvault ls latest | head -1`)
/// becomes [`Error::OutputClosed`], so the command ends through its normal
/// error path: locks and temporary files are released by their owners, and
/// `run` exits with [`exit::OUTPUT_CLOSED`] without a message. (SIGPIPE stays
/// ignored, as Rust sets it: its default action would kill the process in
/// the middle of a write, leaving its lock behind.)
pub fn write_line(line: std::fmt::Arguments<'_>) -> Result<(), Error> {
    use std::io::Write;
    writeln!(std::io::stdout().lock(), "{line}").map_err(stdout_error)
}

/// The error for a failed write to standard output.
pub fn stdout_error(e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Error::OutputClosed
    } else {
        Error::io("standard output", e)
    }
}

/// `--time`: an RFC 3339 time with its UTC offset, e.g. 2026-11-01T02:00:00+07:00.
pub fn parse_time(
    t: Option<&str>,
) -> Result<Option<sopvault::format::manifest::SnapshotTime>, Error> {
    t.map(|t| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(sopvault::format::manifest::SnapshotTime::from_datetime)
            .map_err(|e| Error::Usage(format!("--time {t:?}: not RFC 3339 ({e})")))
    })
    .transpose()
}
