//! The write side of the data flow, below the commands: [`store`] (dedup,
//! parallel sealing, packs, index files), [`added`] (the ids a run added,
//! spilled to disk as they grow), [`parent`] (the parent snapshot's trees, read
//! ahead) and [`delta`] (which base a new chunk is compressed against).
//!
//! Layer: uses `repo` and everything below it; used by `ops`.

pub mod added;
pub mod delta;
pub mod parent;
pub mod store;
