//! How the engine reports progress: a trait the command line implements.

/// Receives progress events; every method has a do-nothing default.
pub trait Progress: Send + Sync {
    /// Whether anything is shown: when not, the engine skips work done only
    /// for the display (the background scan for totals, path strings).
    fn shown(&self) -> bool {
        false
    }
    /// The expected totals, once known (may arrive late, from a background scan).
    fn set_total(&self, _bytes: u64, _files: u64) {}
    /// Bytes of file or stream content processed (read, or reused from the parent).
    fn bytes(&self, _n: u64) {}
    fn file_done(&self) {}
    /// The path or stream being worked on.
    fn current(&self, _what: &str) {}
    /// Something was skipped or could not be applied; the run goes on.
    fn warn(&self, _msg: &str) {}
}

/// Reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}
