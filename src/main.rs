//! The `sopvault` command: parse arguments, run one subcommand, map errors to exit codes.

fn main() {
    // The pipeline moves buffers of 1-16 MiB between threads. Fixing glibc's
    // mmap threshold (which otherwise rises after the first large free) keeps
    // such buffers mmap-backed, so they return to the system when freed and
    // peak RSS does not creep up over a long stream through arena fragmentation.
    // The chunk-sized buffers below it are reused from the heap instead: a trim
    // threshold of 32 MiB stops glibc from returning the heap's top after every
    // batch only to fault it back in (15% of a daily dump's time, measured).
    // SAFETY: mallopt is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 4);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
    }
    std::process::exit(sopvault_cli::run());
}

#[path = "cli/mod.rs"]
mod sopvault_cli;
