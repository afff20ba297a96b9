//! Crash points for fault-injection tests.
//!
//! With `SOPVAULT_CRASH_AT=NAME` in its environment, the process kills itself
//! with SIGKILL when it reaches the point named NAME: no destructors, no
//! cleanup, exactly like `kill -9` or a power cut at that moment. Tests use it
//! to prove that every step of a destructive command leaves a valid
//! repository. Without the variable, a point costs one environment lookup.

/// Dies here if the environment asks for it.
pub fn point(name: &str) {
    if std::env::var_os("SOPVAULT_CRASH_AT").is_some_and(|v| v == name) {
        super::files::kill_self();
    }
}
