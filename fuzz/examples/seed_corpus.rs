//! Writes the seed corpora: `fuzz/corpus/<target>/seed-<name>`.
//!
//! Usage: `cargo run --manifest-path fuzz/Cargo.toml --example seed_corpus [DIR]`
//! (DIR defaults to `fuzz/corpus`). Existing corpus files are left alone.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let seeds = sopvault_fuzz::seeds::all();
    for s in &seeds {
        let target = dir.join(s.target);
        std::fs::create_dir_all(&target)?;
        std::fs::write(target.join(format!("seed-{}", s.name)), &s.bytes)?;
    }
    println!("wrote {} seeds under {}", seeds.len(), dir.display());
    Ok(())
}
