//! Everything that asks the operating system: file metadata and xattrs
//! ([`fsmeta`]), directory walks ([`walk`]), write-behind of restored data
//! ([`writeback`]), host, user, boot and clock ([`sysinfo`]), files to back
//! up and dump commands to stop ([`files`]).
//!
//! Layer: uses `error`, `escape` and `format` (it turns what the kernel says
//! into a tree node or a snapshot time), nothing above.

pub mod files;
pub mod fsmeta;
pub mod sysinfo;
pub mod walk;
pub mod writeback;
