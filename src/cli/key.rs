//! `sopvault key`: add, list, remove and change passwords and machine secrets (key files).

use super::{password, Ctx};
use sopvault::format::keyfile::{Kdf, KdfParams};
use sopvault::repo::{KeyEntry, ListAhead, Repository};
use sopvault::Error;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand)]
pub enum KeyCommand {
    /// Add a password (new password from SOPVAULT_NEW_PASSWORD_FILE or the terminal),
    /// or with --secret-file a generated machine secret for unattended jobs
    Add {
        /// A label for the key file (default: user@host)
        #[arg(long)]
        label: Option<String>,
        /// Generate a 256-bit machine secret into this new file (mode 0600, never
        /// overwritten) instead of asking for a password; point
        /// SOPVAULT_PASSWORD_FILE at it. It opens the repository without the
        /// passphrase KDF. Keep a copy off the machine, or keep a password too.
        #[arg(long, value_name = "FILE")]
        secret_file: Option<PathBuf>,
    },
    /// List key files
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a key file by id (prefix)
    Remove { id: String },
    /// Change the password used now: add the new one, then remove the old one
    Passwd,
}

fn default_label() -> String {
    format!(
        "{}@{}",
        sopvault::sys::sysinfo::username(),
        sopvault::sys::sysinfo::hostname()
    )
}

pub fn run(ctx: &Ctx, cmd: KeyCommand) -> Result<i32, Error> {
    let (repo, _lock) = ctx.open_locked(
        sopvault::repo::lock::Access::Write,
        "key",
        ListAhead::Nothing,
    )?;
    match cmd {
        KeyCommand::Add {
            label,
            secret_file: Some(path),
        } => add_secret(&repo, label, &path)?,
        KeyCommand::Add {
            label,
            secret_file: None,
        } => add_password(&repo, label)?,
        KeyCommand::List { json } => list(&repo, json)?,
        KeyCommand::Remove { id } => {
            let removed = repo.remove_key(&id, false)?;
            outln!("removed key {}", removed.short())?;
        }
        KeyCommand::Passwd => passwd(&repo)?,
    }
    Ok(super::exit::OK)
}

/// `key add --secret-file`: the secret's file is removed again if the key file cannot be written.
fn add_secret(repo: &Repository, label: Option<String>, path: &Path) -> Result<(), Error> {
    let secret = sopvault::format::keyfile::generate_secret()?;
    write_secret_file(path, secret.as_bytes())?;
    let label = label.unwrap_or_else(default_label);
    match repo.add_key(&secret, Kdf::MachineSecret, &label) {
        Ok(id) => outln!(
            "added key {} (machine secret in {}); keep a copy of that file off this machine, or keep a password",
            id.short(),
            path.display()
        ),
        Err(e) => {
            let _ = std::fs::remove_file(path);
            Err(e)
        }
    }
}

fn add_password(repo: &Repository, label: Option<String>) -> Result<(), Error> {
    let pw = password::new_password(false)?;
    let id = repo.add_key(
        &pw,
        Kdf::Argon2id(KdfParams::default()),
        &label.unwrap_or_else(default_label),
    )?;
    outln!("added key {}", id.short())
}

fn list(repo: &Repository, json: bool) -> Result<(), Error> {
    let keys = repo.keys()?;
    if json {
        let v: Vec<_> = keys.iter().map(key_json).collect();
        return super::print_json(&serde_json::Value::Array(v));
    }
    for k in keys {
        let created = chrono::DateTime::from_timestamp(k.created, 0)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default();
        outln!(
            "{} {}  {:<14} {:<30} {created}",
            if k.current { "*" } else { " " },
            k.id.short(),
            kind(k.kdf),
            k.label
        )?;
    }
    Ok(())
}

fn key_json(k: &KeyEntry) -> serde_json::Value {
    serde_json::json!({
        "id": k.id.to_hex(), "short_id": k.id.short(), "label": k.label,
        "created": chrono::DateTime::from_timestamp(k.created, 0).map(|t| t.to_rfc3339()),
        "current": k.current,
        "kind": kind(k.kdf),
        "argon2id": match k.kdf {
            Kdf::Argon2id(p) => serde_json::json!({"m_kib": p.m_kib, "t": p.t, "p": p.p}),
            Kdf::MachineSecret => serde_json::Value::Null,
        },
    })
}

/// `key passwd`: adds the new password's key file, then removes the one in use.
fn passwd(repo: &Repository) -> Result<(), Error> {
    let old = repo.current_key();
    let current = repo.keys()?.into_iter().find(|k| k.current);
    if current
        .as_ref()
        .is_some_and(|k| k.kdf == Kdf::MachineSecret)
    {
        return Err(Error::Usage(
            "the repository was opened with a machine secret, which has no password to change; use `key add --secret-file` and `key remove`".into(),
        ));
    }
    let pw = password::new_password(false)?;
    let label = current.map(|k| k.label).unwrap_or_else(default_label);
    let id = repo.add_key(&pw, Kdf::Argon2id(KdfParams::default()), &label)?;
    repo.remove_key(&old.to_hex(), true)?;
    outln!(
        "password changed: key {} replaces {}",
        id.short(),
        old.short()
    )
}

fn kind(kdf: Kdf) -> &'static str {
    match kdf {
        Kdf::Argon2id(_) => "password",
        Kdf::MachineSecret => "machine-secret",
    }
}

/// Creates `path` (it must not exist) with mode 0600 and writes the secret to it, durably.
fn write_secret_file(path: &Path, secret: &[u8]) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::Usage(format!("--secret-file {}: {e}", path.display())))?;
    let written = f
        .write_all(secret)
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all());
    if let Err(e) = written {
        drop(f);
        let _ = std::fs::remove_file(path);
        return Err(Error::io(path, e));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}
