//! Everything that asks the operating system: file metadata and xattrs
//! ([`fsmeta`]), directory walks ([`walk`]), write-behind of restored data
//! ([`writeback`]), host, user, boot and clock ([`sysinfo`]), files to back
//! up and dump commands to stop ([`files`]), and crash points for
//! fault-injection tests ([`faults`]). The one folder where `unsafe` is
//! allowed (besides the index cache's memory map), each block with a
//! SAFETY note.
//!
//! Layer: uses `error`, `escape` and `format` (it turns what the kernel says
//! into a tree node or a snapshot time), nothing above.

#![allow(unsafe_code)]

pub mod faults;
pub mod files;
pub mod fsmeta;
pub mod sysinfo;
pub mod walk;
pub mod writeback;
