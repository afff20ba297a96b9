//! `format::pack`: a pack's footer lists exactly the blobs written into it,
//! whether the pack was drained to storage piece by piece or not.

use crate::blob::{self, BlobKind};
use crate::crypto::{MasterKey, Secret32};
use crate::format::pack::{read_footer_from_bytes, PackKind, PackWriter};
use crate::testutil::noise;

fn sealed_blobs(key: &MasterKey) -> Vec<blob::SealedBlob> {
    (0..12)
        .map(|i| {
            // Half incompressible, half compressible: both codecs.
            let plain = match i % 2 {
                0 => noise(5000 + i * 300, i as u64),
                _ => vec![i as u8; 7000],
            };
            let id = key.chunk_id(&plain);
            blob::seal(key, BlobKind::Data, id, &plain, 3).unwrap()
        })
        .collect()
}

#[test]
fn a_footer_round_trips_with_and_without_draining() {
    let key = MasterKey::from_master(Secret32::random().unwrap());
    let blobs = sealed_blobs(&key);
    for drain_every in [None, Some(1), Some(5)] {
        let mut w = PackWriter::new(PackKind::Data);
        let mut drained = Vec::new();
        let mut infos = Vec::new();
        for (i, b) in blobs.iter().enumerate() {
            infos.push(w.add(b));
            if drain_every.is_some_and(|n| i % n == 0) {
                w.drain(|bytes| {
                    drained.extend_from_slice(bytes);
                    Ok(())
                })
                .unwrap();
            }
        }
        let done = w.finish(&key).unwrap();
        drained.extend_from_slice(&done.bytes);
        assert_eq!(done.len, drained.len() as u64);
        assert_eq!(done.id.0, crate::ids::sha256(&drained), "{drain_every:?}");
        let footer = read_footer_from_bytes(&key, &drained, "test pack").unwrap();
        assert_eq!(footer, infos, "{drain_every:?}");
        assert_eq!(done.blobs, infos);
        for (info, b) in footer.iter().zip(&blobs) {
            let at = info.offset as usize;
            assert_eq!(&drained[at..at + info.stored_len as usize], &b.bytes[..]);
        }
    }
}

#[test]
fn a_footer_under_another_key_or_a_cut_pack_is_damage() {
    let key = MasterKey::from_master(Secret32::random().unwrap());
    let done = {
        let mut w = PackWriter::new(PackKind::Data);
        sealed_blobs(&key).iter().for_each(|b| {
            w.add(b);
        });
        w.finish(&key).unwrap()
    };
    let other = MasterKey::from_master(Secret32::random().unwrap());
    let e = read_footer_from_bytes(&other, &done.bytes, "p").unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::Damaged, "{e}");
    let cut = &done.bytes[..done.bytes.len() - 1];
    let e = read_footer_from_bytes(&key, cut, "p").unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::Damaged, "{e}");
}
