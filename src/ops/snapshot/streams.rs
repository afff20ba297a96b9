//! Dump streams: standard input or a command's standard output, chunked into
//! the store like a file's content and recorded (command, exit status, byte
//! count, SHA-256, start and end) next to a file node at the snapshot's root.
//! A command runs in its own process group, so that on Ctrl-C or a failed
//! read it is stopped together with everything it started; a command that
//! fails, or is killed, fails the stream.

use super::archiver::{store_content, Archiver, Input};
use super::options::{StreamInput, StreamSpec};
use crate::error::{Error, Result};
use crate::format::manifest::{SnapshotTime, StreamRecord};
use crate::format::tree::{Content, Node, NodeKind};
use crate::sys::files::{self, Stop};
use crate::write::delta::ParentCursor;
use sha2::Digest;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

impl Archiver<'_, '_> {
    /// Reads one stream into the store; `prev` is its content in the parent
    /// snapshot, to offer delta bases. Returns its node and its record.
    pub(super) fn stream(
        &mut self,
        spec: &StreamSpec,
        prev: Option<&Content>,
    ) -> Result<(Node, StreamRecord)> {
        let mut cursor = prev
            .filter(|_| self.delta)
            .map(|c| ParentCursor::new(self.repo, self.index, c));
        let started = crate::sys::sysinfo::now();
        self.progress.current(&spec.name);
        let (reader, mut child) = open_input(spec)?;
        let mut sha = sha2::Sha256::new();
        let pid = child.as_ref().map(Child::id);
        let (read, content) = match self.read_stream(spec, reader, pid, &mut sha, cursor.as_mut()) {
            Ok(r) => r,
            Err(e) => {
                if let Some(c) = child.as_mut() {
                    // The whole process group: `sh -c` forks the command
                    // rather than exec'ing it, and a survivor would run on
                    // (holding our standard error) after we exit. The child
                    // is not reaped yet, so its group id still names it.
                    files::signal_group(c.id(), Stop::Kill);
                    let _ = c.wait();
                }
                return Err(e);
            }
        };
        let exit_status = child.map(|c| wait_command(spec, c)).transpose()?;
        let ended = crate::sys::sysinfo::now();
        self.summary.files += 1;
        self.summary.bytes_read += read;
        self.summary.bytes_total += read;
        let node = self.stream_node(spec, read, content, &ended);
        let record = StreamRecord {
            name: spec.name.clone(),
            command: match &spec.input {
                StreamInput::Stdin => None,
                StreamInput::Command(c) => Some(c.clone()),
            },
            exit_status,
            bytes: read,
            sha256: sha.finalize().into(),
            started,
            ended,
            shrunk_from: None,
        };
        Ok((node, record))
    }

    /// Chunks the stream into the store, hashing every byte; on Ctrl-C a
    /// watcher stops the command (process group `pid`) even if it writes
    /// nothing, so the read ends and the run unwinds promptly.
    fn read_stream(
        &mut self,
        spec: &StreamSpec,
        reader: Box<dyn Read>,
        pid: Option<u32>,
        sha: &mut sha2::Sha256,
        cursor: Option<&mut ParentCursor<'_>>,
    ) -> Result<(u64, Content)> {
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            if let Some(pid) = pid {
                let done = &done;
                scope.spawn(move || stop_on_interrupt(pid, done));
            }
            let r = store_content(
                &self.chunker,
                &mut self.store,
                self.progress,
                Input {
                    reader,
                    size_hint: None,
                    sha: Some(sha),
                },
                cursor,
                |e| stream_failed(spec, format!("reading its input failed: {e}")),
            );
            done.store(true, Ordering::Relaxed);
            r
        })
    }

    /// The file node of a stream: owned by this process's user, mode 0600,
    /// dated when the stream ended.
    fn stream_node(
        &mut self,
        spec: &StreamSpec,
        size: u64,
        content: Content,
        ended: &SnapshotTime,
    ) -> Node {
        let (uid, gid) = files::effective_ids();
        Node {
            name: spec.name.as_bytes().to_vec(),
            kind: NodeKind::File { size, content },
            mode: files::S_IFREG | 0o600,
            uid,
            gid,
            user: self.names.user(uid),
            group: self.names.group(gid),
            mtime: ended.at,
            ctime: ended.at,
            inode: 0,
            device: 0,
            links: 1,
            xattrs: Vec::new(),
        }
    }
}

fn stream_failed(spec: &StreamSpec, reason: String) -> Error {
    Error::StreamFailed {
        name: spec.name.clone(),
        reason,
    }
}

/// The stream's reader, and the command producing it (if any), started in
/// its own process group.
fn open_input(spec: &StreamSpec) -> Result<(Box<dyn Read>, Option<Child>)> {
    match &spec.input {
        StreamInput::Stdin => Ok((Box::new(std::io::stdin().lock()), None)),
        StreamInput::Command(cmd) => {
            let mut child = Command::new("/bin/sh")
                .arg("-c")
                .arg(cmd)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                // Its own process group, so that on Ctrl-C the watcher can
                // stop the command together with everything it started.
                .process_group(0)
                .spawn()
                .map_err(|e| stream_failed(spec, format!("cannot start `{cmd}`: {e}")))?;
            let out = child.stdout.take().expect("stdout is piped");
            Ok((Box::new(out), Some(child)))
        }
    }
}

/// Until `done`, checks for Ctrl-C every 50 ms and then stops the command's
/// process group. The child is reaped only after the read's scope ends, so
/// the group id still names it.
fn stop_on_interrupt(pid: u32, done: &AtomicBool) {
    while !done.load(Ordering::Relaxed) {
        if crate::interrupt::check().is_err() {
            files::signal_group(pid, Stop::Terminate);
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Waits for a command whose output was read to the end; its exit status
/// (0) or why it failed the stream.
fn wait_command(spec: &StreamSpec, mut child: Child) -> Result<i32> {
    use std::os::unix::process::ExitStatusExt;
    let status = child
        .wait()
        .map_err(|e| stream_failed(spec, format!("waiting for the command failed: {e}")))?;
    // A Ctrl-C on a terminal reaches the dump command too: that is
    // an interruption, not a failed dump.
    crate::interrupt::check()?;
    if let Some(sig) = status.signal() {
        return Err(stream_failed(
            spec,
            format!("the command was killed by signal {sig}"),
        ));
    }
    let code = status.code().unwrap_or(-1);
    if code != 0 {
        return Err(stream_failed(
            spec,
            format!("the command exited with status {code}"),
        ));
    }
    Ok(code)
}
