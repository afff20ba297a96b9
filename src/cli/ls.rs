//! `sopvault ls`: list the files of a snapshot, recursively.

use super::{print_json, Ctx};
use serde_json::json;
use sopvault::repo::ListAhead;
use sopvault::restore::{find_node, walk};
use sopvault::tree::{Node, NodeKind, Tree};
use sopvault::Error;

#[derive(clap::Args)]
pub struct Args {
    /// Snapshot: latest, SOURCE:latest, a name or an id prefix
    snapshot: String,
    /// Only this path and what is below it
    path: Option<String>,
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

fn print(path: &str, n: &Node, json: bool, long: bool) {
    if json {
        let t = sopvault::manifest::SnapshotTime {
            at: n.mtime,
            utc_offset: 0,
        };
        let mut v = json!({
            "path": path,
            "type": kind_name(n),
            "mode": format!("{:o}", n.mode & 0o7777),
            "uid": n.uid, "gid": n.gid, "user": n.user, "group": n.group,
            "size": n.size(),
            "mtime": t.to_datetime().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            "links": n.links,
        });
        if let NodeKind::Symlink { target } = &n.kind {
            v["target"] = String::from_utf8_lossy(target).into_owned().into();
        }
        println!("{v}");
    } else if long {
        let t = sopvault::manifest::SnapshotTime {
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
            NodeKind::Symlink { target } => format!(" -> {}", String::from_utf8_lossy(target)),
            _ => String::new(),
        };
        println!(
            "{} {:>8} {:>8} {:>12} {} {}{}",
            mode_string(n),
            owner,
            group,
            n.size(),
            t.to_datetime().format("%Y-%m-%d %H:%M:%S"),
            path,
            target
        );
    } else {
        println!("{path}");
    }
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32, Error> {
    let (repo, _lock) = ctx.open_locked(sopvault::lock::Access::Read, "ls", ListAhead::Index)?;
    let (_, snap) = repo.find_snapshot(&args.snapshot)?;
    let index = repo.index()?;
    ctx.print_warnings(&repo);
    let start = args.path.as_deref().unwrap_or("/");
    let mut f = |p: &str, n: &Node| {
        print(p, n, args.json, args.long);
        Ok(())
    };
    let mut unreadable = 0usize;
    let mut damaged = |p: &str, e: Error| {
        unreadable += 1;
        eprintln!("sopvault: error: {p}: directory not listed, nor anything below it: {e}");
    };
    match find_node(&repo, &index, &snap.root, start)? {
        None => {
            let tree = repo.load_tree(&index, &snap.root, "/")?;
            walk(&repo, &index, &tree, "", &mut f, &mut damaged)?;
        }
        Some(node) => {
            let shown = format!("/{}", start.trim_matches('/'));
            f(&shown, &node)?;
            if let NodeKind::Dir { tree } = &node.kind {
                let t: Tree = repo.load_tree(&index, tree, &shown)?;
                walk(&repo, &index, &t, &shown, &mut f, &mut damaged)?;
            }
        }
    }
    if args.json {
        let _ = print_json;
    }
    if unreadable > 0 {
        eprintln!(
            "sopvault: {unreadable} directory(ies) could not be listed because of damaged data"
        );
        return Ok(super::exit::DAMAGED);
    }
    Ok(super::exit::OK)
}
