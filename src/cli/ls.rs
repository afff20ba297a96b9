//! `sopvault ls`: list the files of a snapshot, recursively.

use super::Ctx;
use serde_json::json;
use sopvault::format::tree::{Node, NodeKind, Tree};
use sopvault::ops::restore::{join_display, resolve_path, walk};
use sopvault::repo::ListAhead;
use sopvault::Error;
use std::os::unix::ffi::OsStrExt;

#[derive(clap::Args)]
pub struct Args {
    /// Snapshot: latest, SOURCE:latest, a name or an id prefix
    snapshot: String,
    /// Only this path and what is below it (a name as `ls` prints it, `\xNN` escapes included, also works)
    path: Option<std::ffi::OsString>,
    /// Print one JSON object per line
    #[arg(long)]
    json: bool,
    /// Show mode, owner, size and mtime
    #[arg(long, short)]
    long: bool,
}

fn kind_name(n: &Node) -> &'static str {
    match n.kind {
        NodeKind::File { .. } => "file",
        NodeKind::Dir { .. } => "dir",
        NodeKind::Symlink { .. } => "symlink",
        NodeKind::Fifo => "fifo",
        NodeKind::CharDevice { .. } => "chardev",
        NodeKind::BlockDevice { .. } => "blockdev",
        NodeKind::Socket => "socket",
    }
}

fn mode_string(n: &Node) -> String {
    let t = match n.kind {
        NodeKind::Dir { .. } => 'd',
        NodeKind::Symlink { .. } => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::CharDevice { .. } => 'c',
        NodeKind::BlockDevice { .. } => 'b',
        NodeKind::Socket => 's',
        NodeKind::File { .. } => '-',
    };
    let mut s = String::from(t);
    for shift in [6, 3, 0] {
        let b = (n.mode >> shift) & 7;
        s.push(if b & 4 != 0 { 'r' } else { '-' });
        s.push(if b & 2 != 0 { 'w' } else { '-' });
        s.push(if b & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// A JSON field holding a name: the escaped text, and the exact bytes in
/// base64 (`NAME_base64`) when the escaped text is not the name itself.
fn name_fields(v: &mut serde_json::Value, field: &str, bytes: &[u8]) {
    use base64::Engine;
    v[field] = sopvault::escape::escape(bytes).into();
    if !sopvault::escape::is_plain(bytes) {
        v[format!("{field}_base64")] = base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into();
    }
}

fn print(path_bytes: &[u8], n: &Node, json: bool, long: bool) -> Result<(), Error> {
    let path = sopvault::escape::escape(path_bytes);
    if json {
        let t = sopvault::format::manifest::SnapshotTime {
            at: n.mtime,
            utc_offset: 0,
        };
        let mut v = json!({
            "type": kind_name(n),
            "mode": format!("{:o}", n.mode & 0o7777),
            "uid": n.uid, "gid": n.gid, "user": n.user, "group": n.group,
            "size": n.size(),
            "mtime": t.to_datetime().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            "links": n.links,
        });
        name_fields(&mut v, "path", path_bytes);
        if let NodeKind::Symlink { target } = &n.kind {
            name_fields(&mut v, "target", target);
        }
        outln!("{v}")?;
    } else if long {
        let t = sopvault::format::manifest::SnapshotTime {
            at: n.mtime,
            utc_offset: 0,
        };
        let owner = if n.user.is_empty() {
            n.uid.to_string()
        } else {
            n.user.clone()
        };
        let group = if n.group.is_empty() {
            n.gid.to_string()
        } else {
            n.group.clone()
        };
        let target = match &n.kind {
            NodeKind::Symlink { target } => {
                format!(" -> {}", sopvault::escape::escape(target))
            }
            _ => String::new(),
        };
        outln!(
            "{} {:>8} {:>8} {:>12} {} {}{}",
            mode_string(n),
            owner,
            group,
            n.size(),
            t.to_datetime().format("%Y-%m-%d %H:%M:%S"),
            path,
            target
        )?;
    } else {
        outln!("{path}")?;
    }
    Ok(())
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32, Error> {
    let (repo, _lock) =
        ctx.open_locked(sopvault::repo::lock::Access::Read, "ls", ListAhead::Index)?;
    let (_, snap) = repo.find_snapshot(&args.snapshot)?;
    let index = repo.index()?;
    ctx.print_warnings(&repo);
    let start = args.path.as_ref().map_or(&b"/"[..], |p| p.as_bytes());
    let mut f = |p: &[u8], n: &Node| print(p, n, args.json, args.long);
    let mut unreadable = 0usize;
    let mut damaged = |p: &[u8], e: Error| {
        unreadable += 1;
        eprintln!(
            "sopvault: error: {}: directory not listed, nor anything below it: {e}",
            sopvault::escape::escape(p)
        );
    };
    match resolve_path(&repo, &index, &snap.root, start)? {
        (_, None) => {
            let tree = repo.load_tree(&index, &snap.root, "/")?;
            walk(&repo, &index, &tree, b"", &mut f, &mut damaged)?;
        }
        (parts, Some(node)) => {
            let shown = parts.join(&b'/');
            let shown = [&b"/"[..], &shown].concat();
            f(&shown, &node)?;
            if let NodeKind::Dir { tree } = &node.kind {
                let t: Tree = repo.load_tree(&index, tree, &join_display(&parts))?;
                walk(&repo, &index, &t, &shown, &mut f, &mut damaged)?;
            }
        }
    }
    if unreadable > 0 {
        eprintln!(
            "sopvault: {unreadable} directory(ies) could not be listed because of damaged data"
        );
        return Ok(super::exit::DAMAGED);
    }
    Ok(super::exit::OK)
}
