//! The `sopvault` command: parse arguments, run one subcommand, map errors to exit codes.

fn main() {
    // The pipeline moves buffers of 1-16 MiB between threads. Fixing glibc's
    // mmap threshold (which otherwise rises after the first large free) keeps
    // such buffers mmap-backed, so they return to the system when freed and
    // peak RSS does not creep up over a long stream through arena fragmentation.
    // SAFETY: mallopt is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
    std::process::exit(sopvault_cli::run());
}

#[path = "cli/mod.rs"]
mod sopvault_cli;
