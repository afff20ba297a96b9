//! A terminal progress bar for `snapshot` and `mirror`: bytes, files, rate and ETA.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub struct Bar {
    bar: Option<ProgressBar>,
    files: AtomicU64,
    current: Mutex<String>,
}

impl Bar {
    /// A bar on stderr when it is a terminal and output is not quiet or JSON.
    pub fn new(enabled: bool) -> Bar {
        if !enabled || !std::io::stderr().is_terminal() {
            return Bar {
                bar: None,
                files: AtomicU64::new(0),
                current: Mutex::new(String::new()),
            };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {elapsed_precise} {bytes}/{total_bytes} ({binary_bytes_per_sec}, ETA {eta}) {wide_msg}",
            )
            .expect("valid template"),
        );
        Bar {
            bar: Some(bar),
            files: AtomicU64::new(0),
            current: Mutex::new(String::new()),
        }
    }
    fn redraw(&self) {
        if let Some(b) = &self.bar {
            let files = self.files.load(Ordering::Relaxed);
            b.set_message(format!("{files} files  {}", self.current.lock().unwrap()));
        }
    }
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl sopvault::ops::progress::Progress for Bar {
    fn shown(&self) -> bool {
        self.bar.is_some()
    }
    fn set_total(&self, bytes: u64, _files: u64) {
        if let Some(b) = &self.bar {
            b.set_length(bytes);
        }
    }
    fn bytes(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }
    fn file_done(&self) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.redraw();
    }
    fn current(&self, what: &str) {
        *self.current.lock().unwrap() = what.to_string();
        self.redraw();
    }
    fn warn(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| eprintln!("sopvault: warning: {msg}")),
            None => eprintln!("sopvault: warning: {msg}"),
        }
    }
}
