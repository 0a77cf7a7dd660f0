//! The archive reader on arbitrary bytes: opening, the quick check, unlocking with the seed's
//! password, the index and every section must fail cleanly or succeed — never panic, hang or
//! exhaust memory. Seed: `corpus/archive_reader/seed.shar` (password "fuzz", a cheap KDF), written
//! by `SAFEHOLD_WRITE_FUZZ_SEED=1 cargo test -p safehold-core --test engine fuzz_seed`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use safehold_core::archive::keys::{KeySlot, Unlock};
use safehold_core::archive::ArchiveReader;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("safehold-fuzz-{}.shar", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(mut reader) = ArchiveReader::open(&path) else { return };
    let _ = reader.quick_check();
    // A mutated header may ask for an enormous key derivation: not the reader's bug, skip it.
    let cheap = reader.header.master_slots.iter().all(|s| match s {
        KeySlot::Password { kdf, .. } => kdf.m_cost_kib <= 1024 && kdf.t_cost <= 2 && kdf.p_cost <= 2,
        _ => true,
    });
    if !cheap || reader.unlock(None, Some(&Unlock::Password("fuzz".into()))).is_err() {
        return;
    }
    let Ok(index) = reader.index() else { return };
    for s in &index.sections {
        let mut n = 0usize;
        let _ = reader.read_section(&index, &s.name, &mut |b| {
            n += b.len();
            Ok(())
        });
    }
});
