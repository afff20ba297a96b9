//! Trees and chunk lists: `Tree::decode` and `ChunkList::decode` on plaintext.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sopvault::format::tree::{ChunkList, Tree, LIST_CHUNKS};
use sopvault_fuzz::OBJECT;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = Tree::decode(data, OBJECT) {
        for n in &t.nodes {
            let found = t.find(&n.name).expect("a decoded tree finds its own names");
            assert_eq!(found.name, n.name);
            let _ = (n.size(), n.name_lossy());
        }
        assert_eq!(
            Tree::decode(&t.encode(), OBJECT).expect("re-encoded tree"),
            t
        );
    }
    if let Ok(l) = ChunkList::decode(data, OBJECT) {
        assert!(l.chunks.len() <= LIST_CHUNKS);
        assert_eq!(
            ChunkList::decode(&l.encode(), OBJECT).expect("re-encoded list"),
            l
        );
    }
});
