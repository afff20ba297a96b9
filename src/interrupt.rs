//! A process-wide interruption flag.
//!
//! The command line sets it from its SIGINT/SIGTERM handler; long loops in the
//! engine call [`check`] and unwind with [`Error::Interrupted`], so temporary
//! files and locks are cleaned up on the way out.

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub fn flag() -> &'static AtomicBool {
    &INTERRUPTED
}

pub fn check() -> Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}
