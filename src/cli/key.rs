//! `sopvault key`: add, list, remove and change passwords (key files).

use super::{password, Ctx};
use sopvault::keyfile::KdfParams;
use sopvault::repo::ListAhead;
use sopvault::Error;

#[derive(clap::Subcommand)]
pub enum KeyCommand {
    /// Add a password (new password from SOPVAULT_NEW_PASSWORD_FILE or the terminal)
    Add {
        /// A label for the key file (default: user@host)
        #[arg(long)]
        label: Option<String>,
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
        sopvault::sysinfo::username(),
        sopvault::sysinfo::hostname()
    )
}

pub fn run(ctx: &Ctx, cmd: KeyCommand) -> Result<i32, Error> {
    let (repo, _lock) =
        ctx.open_locked(sopvault::lock::Access::Write, "key", ListAhead::Nothing)?;
    match cmd {
        KeyCommand::Add { label } => {
            let pw = password::new_password(false)?;
            let id = repo.add_key(
                &pw,
                KdfParams::default(),
                &label.unwrap_or_else(default_label),
            )?;
            println!("added key {}", id.short());
        }
        KeyCommand::List { json } => {
            let keys = repo.keys()?;
            if json {
                let v: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "id": k.id.to_hex(), "short_id": k.id.short(), "label": k.label,
                            "created": chrono::DateTime::from_timestamp(k.created, 0).map(|t| t.to_rfc3339()),
                            "current": k.current,
                            "argon2id": {"m_kib": k.kdf.m_kib, "t": k.kdf.t, "p": k.kdf.p},
                        })
                    })
                    .collect();
                super::print_json(&serde_json::Value::Array(v));
            } else {
                for k in keys {
                    let created = chrono::DateTime::from_timestamp(k.created, 0)
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                        .unwrap_or_default();
                    println!(
                        "{} {}  {:<30} {created}",
                        if k.current { "*" } else { " " },
                        k.id.short(),
                        k.label
                    );
                }
            }
        }
        KeyCommand::Remove { id } => {
            let removed = repo.remove_key(&id, false)?;
            println!("removed key {}", removed.short());
        }
        KeyCommand::Passwd => {
            let pw = password::new_password(false)?;
            let old = repo.current_key();
            let label = repo
                .keys()?
                .into_iter()
                .find(|k| k.current)
                .map(|k| k.label)
                .unwrap_or_else(default_label);
            let id = repo.add_key(&pw, KdfParams::default(), &label)?;
            repo.remove_key(&old.to_hex(), true)?;
            println!(
                "password changed: key {} replaces {}",
                id.short(),
                old.short()
            );
        }
    }
    Ok(super::exit::OK)
}
