//! Store tests: round trips, dedup across similar inputs, atomic commit, corruption, GC.

use super::*;

fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn manifest(id: &str, files: Vec<FileEntry>) -> Manifest {
    Manifest {
        version: MANIFEST_VERSION,
        id: id.into(),
        kind: "checkpoint".into(),
        container_id: "web".into(),
        files,
        provenance: Provenance::default(),
    }
}

#[test]
fn ingest_commit_materialize_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("pages-1.img"), pseudo_random(3 << 20, 7)).unwrap();
    fs::write(src.join("sub/empty"), b"").unwrap();
    fs::write(src.join("core-1.img"), b"small").unwrap();
    let files = store.ingest_dir(&src, |_, _| {}).unwrap();
    assert_eq!(
        files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
        ["core-1.img", "pages-1.img", "sub/empty"]
    );
    assert!(
        files[1].chunks.len() > 3,
        "a 3 MiB file is cut into several chunks"
    );
    let m = manifest("m1", files);
    store.commit(&m).unwrap();
    assert_eq!(store.manifest("m1").unwrap(), m);
    let out = tmp.path().join("out");
    store.materialize(&m, &out, &Default::default()).unwrap();
    // Trusted chunks (verified moments ago) are only decompressed: the same files.
    let trusted = m.chunks().map(|c| c.hash.clone()).collect();
    let out2 = tmp.path().join("out2");
    store.materialize(&m, &out2, &trusted).unwrap();
    for f in ["pages-1.img", "sub/empty", "core-1.img"] {
        for o in [&out, &out2] {
            assert_eq!(
                fs::read(o.join(f)).unwrap(),
                fs::read(src.join(f)).unwrap(),
                "{f}"
            );
        }
    }
}

#[test]
fn a_small_change_stores_few_new_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let mut data = pseudo_random(8 << 20, 3);
    let src = tmp.path().join("a");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), &data).unwrap();
    let mut first = 0;
    store
        .ingest_dir(&src, |_, new| first += new as usize)
        .unwrap();
    // Change 100 bytes in the middle and insert 10 bytes near the start.
    data[4 << 20..(4 << 20) + 100].fill(0);
    data.splice(1000..1000, [1u8; 10]);
    fs::write(src.join("f"), &data).unwrap();
    let (mut new, mut total) = (0, 0);
    store
        .ingest_dir(&src, |_, n| {
            new += n as usize;
            total += 1;
        })
        .unwrap();
    assert!(first >= 20, "{first}");
    assert!(
        new <= 4,
        "{new} of {total} chunks were new after a small change"
    );
}

#[test]
fn commit_refuses_missing_chunks_and_bad_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let ghost = ChunkRef {
        hash: hash(b"never stored"),
        size: 12,
    };
    let m = manifest(
        "m",
        vec![FileEntry {
            path: "x".into(),
            mode: 0o644,
            size: 12,
            chunks: vec![ghost],
        }],
    );
    assert!(matches!(store.commit(&m), Err(StoreError::Missing { .. })));
    assert!(
        store.manifest_ids().unwrap().is_empty(),
        "a manifest with missing chunks became visible"
    );
    let (r, _) = store.put(b"data").unwrap();
    for path in ["../escape", "/abs", "a/../b", ""] {
        let m = manifest(
            "m",
            vec![FileEntry {
                path: path.into(),
                mode: 0o644,
                size: 4,
                chunks: vec![r.clone()],
            }],
        );
        assert!(
            matches!(store.commit(&m), Err(StoreError::BadManifest { .. })),
            "{path}"
        );
    }
    let m = manifest(
        "m",
        vec![FileEntry {
            path: "x".into(),
            mode: 0o644,
            size: 5,
            chunks: vec![r],
        }],
    );
    assert!(store.commit(&m).is_err(), "sizes that do not add up");
}

#[test]
fn corrupt_chunks_are_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let data = pseudo_random(100_000, 9);
    let (r, _) = store.put(&data).unwrap();
    // In flight: bytes that do not match the claimed hash are refused.
    let mut bad = compress(&data);
    let n = bad.len();
    bad[n / 2] ^= 0xff;
    assert!(matches!(
        store.put_compressed(&hash(b"other"), 100_000, &compress(&data)),
        Err(StoreError::Corrupt { .. })
    ));
    let other = pseudo_random(1000, 1);
    assert!(store
        .put_compressed(&hash(&other), 1000, &compress(&other))
        .is_ok());
    // At rest: a flipped byte in the chunk file is caught on read.
    let path = store.chunk_path(&r.hash);
    let mut on_disk = fs::read(&path).unwrap();
    let n = on_disk.len();
    on_disk[n - 10] ^= 0x55;
    fs::write(&path, on_disk).unwrap();
    assert!(matches!(store.read(&r), Err(StoreError::Corrupt { .. })));
    assert!(matches!(
        store.put_compressed("not-a-hash", 1, b"x"),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn gc_removes_only_unreferenced_old_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let (keep, _) = store.put(b"kept").unwrap();
    let (_drop, _) = store.put(b"dropped").unwrap();
    store
        .commit(&manifest(
            "m",
            vec![FileEntry {
                path: "k".into(),
                mode: 0o600,
                size: 4,
                chunks: vec![keep.clone()],
            }],
        ))
        .unwrap();
    // Chunks newer than `since` survive even when unreferenced (a manifest may be in progress).
    assert_eq!(
        store
            .gc(std::time::SystemTime::UNIX_EPOCH, &Default::default())
            .unwrap()
            .0,
        0
    );
    let (removed, _) = store
        .gc(
            std::time::SystemTime::now() + std::time::Duration::from_secs(60),
            &Default::default(),
        )
        .unwrap();
    assert_eq!(removed, 1);
    assert!(store.has(&keep.hash));
    assert_eq!(store.read(&keep).unwrap(), b"kept");
    // Reusing an unreferenced chunk makes it young again: a collection with a cutoff before the
    // reuse spares it.
    let (orphan, _) = store.put(b"orphan").unwrap();
    let before_reuse = std::time::SystemTime::now();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (again, new) = store.put(b"orphan").unwrap();
    assert!(!new && again == orphan);
    assert_eq!(
        store.gc(before_reuse, &Default::default()).unwrap().0,
        0,
        "a just-reused chunk was collected"
    );
    assert!(store.has(&orphan.hash));
}

#[test]
fn gc_spares_chunks_of_transfers_in_flight_and_verify_finds_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (pending, _) = store.put(b"arrived before its manifest").unwrap();
    let (orphan, _) = store.put(b"nobody wants me").unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    let keep = std::collections::HashSet::from([pending.hash.clone()]);
    assert_eq!(store.gc(later, &keep).unwrap().0, 1);
    assert!(store.has(&pending.hash));
    assert!(!store.has(&orphan.hash));
    assert!(store.stored_size(&pending.hash) > 0);
    assert_eq!(store.stored_size(&orphan.hash), 0);

    store.verify_chunks(std::slice::from_ref(&pending)).unwrap();
    let path = store.chunk_path(&pending.hash);
    let mut data = std::fs::read(&path).unwrap();
    let n = data.len() / 2;
    data[n] ^= 0xff;
    std::fs::write(&path, data).unwrap();
    let err = store
        .verify_chunks(std::slice::from_ref(&pending))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&pending.hash), "{err}");
}

#[test]
fn a_staged_view_writes_elsewhere_and_unstages_before_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let (old, _) = store.put(b"already in the store").unwrap();
    let stage_dir = dir.path().join("stage");
    let staged = store.staged(&stage_dir);
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), pseudo_random(600_000, 7)).unwrap();
    fs::write(src.join("b"), b"already in the store").unwrap();
    let mut new = Vec::new();
    let files = staged
        .ingest_dir(&src, |r, is_new| {
            if is_new {
                new.push(r.clone());
            }
        })
        .unwrap();
    assert!(!new.is_empty() && !new.contains(&old), "{new:?}");
    // New chunks are in the stage only; the view sees both places.
    for r in &new {
        assert!(staged.has(&r.hash) && !store.has(&r.hash));
        assert_eq!(staged.read(r).unwrap().len() as u64, r.size);
    }
    assert!(staged.has(&old.hash));
    let m = manifest("staged", files);
    assert!(matches!(staged.commit(&m), Err(StoreError::Missing { .. })));
    assert_eq!(staged.unstage().unwrap(), new.len());
    assert!(!stage_dir.exists());
    staged.commit(&m).unwrap();
    let out = dir.path().join("out");
    store.materialize(&m, &out, &Default::default()).unwrap();
    assert_eq!(
        fs::read(out.join("a")).unwrap(),
        fs::read(src.join("a")).unwrap()
    );
    // Dropping a stage forgets what it held.
    let other = store.staged(&dir.path().join("stage2"));
    let (gone, is_new) = other.put(b"never committed").unwrap();
    assert!(is_new && other.has(&gone.hash));
    other.drop_stage();
    assert!(!other.has(&gone.hash) && !store.has(&gone.hash));
}
