use super::*;

const KEY: [u8; 16] = [7; 16];

fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("bin")).unwrap();
    fs::create_dir_all(dir.path().join("etc/ssl")).unwrap();
    fs::write(dir.path().join("bin/app"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(
        dir.path().join("bin/app"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let big: Vec<u8> = (0..(3 * CHUNK_SIZE + 123))
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    fs::write(dir.path().join("etc/big.bin"), &big).unwrap();
    fs::write(dir.path().join("etc/empty"), b"").unwrap();
    std::os::unix::fs::symlink("../bin/app", dir.path().join("etc/app-link")).unwrap();
    dir
}

fn packed(seal: Seal<'_>) -> (tempfile::TempDir, PathBuf) {
    let src = tree();
    let out = tempfile::tempdir().unwrap();
    let image = out.path().join("rootfs.img");
    pack(seal, src.path(), &image).unwrap();
    (out, image)
}

fn sealed_bytes(seal: Seal<'_>, plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    seal_stream(seal, plaintext, &mut out).unwrap();
    out
}

fn open_all(seal: Seal<'_>, bytes: &[u8]) -> Result<Vec<u8>, ImageError> {
    let mut opener = Opener::new(seal, BufReader::new(bytes))?;
    let mut out = Vec::new();
    match opener.read_to_end(&mut out) {
        Ok(_) => Ok(out),
        Err(e) => Err(opener.failure.take().unwrap_or(ImageError::Archive {
            detail: e.to_string(),
        })),
    }
}

fn unpack_bytes(
    seal: Seal<'_>,
    bytes: &[u8],
) -> (tempfile::TempDir, Result<UnpackReport, ImageError>) {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("img");
    fs::write(&image, bytes).unwrap();
    let result = unpack(seal, &image, &dir.path().join("rootfs"));
    (dir, result)
}

fn leftovers(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.retain(|n| n != "img");
    names.sort();
    names
}

#[test]
fn a_packed_tree_unpacks_byte_exact() {
    let src = tree();
    let (out, image) = packed(Seal::Encrypted(&KEY));
    let rootfs = out.path().join("rootfs");
    let report = unpack(Seal::Encrypted(&KEY), &image, &rootfs).unwrap();
    assert_eq!(report.files, 3);
    assert_eq!(report.symlinks, 1);
    assert_eq!(report.dirs, 3);
    for file in ["bin/app", "etc/big.bin", "etc/empty"] {
        assert_eq!(
            fs::read(rootfs.join(file)).unwrap(),
            fs::read(src.path().join(file)).unwrap(),
            "{file}"
        );
    }
    assert_eq!(
        fs::read_link(rootfs.join("etc/app-link")).unwrap(),
        Path::new("../bin/app")
    );
    let mode = fs::metadata(rootfs.join("bin/app"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o755);
    let root_mode = fs::metadata(&rootfs).unwrap().permissions().mode() & 0o777;
    assert_eq!(root_mode, 0o700);
}

#[test]
fn the_image_is_not_plaintext() {
    let (_out, image) = packed(Seal::Encrypted(&KEY));
    let bytes = fs::read(image).unwrap();
    assert!(
        !bytes
            .windows(9)
            .any(|w| w == b"echo hi\n\0" || w.starts_with(b"echo hi"))
    );
}

#[test]
fn stream_round_trips_at_every_chunk_boundary() {
    for len in [
        0,
        1,
        CHUNK_SIZE - 1,
        CHUNK_SIZE,
        CHUNK_SIZE + 1,
        2 * CHUNK_SIZE,
    ] {
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let sealed = sealed_bytes(Seal::Encrypted(&KEY), &data);
        let chunks = len.div_ceil(CHUNK_SIZE).max(1);
        assert_eq!(
            sealed.len(),
            HEADER_LEN + TAG_LEN + len + chunks * TAG_LEN,
            "len {len}"
        );
        assert_eq!(
            open_all(Seal::Encrypted(&KEY), &sealed).unwrap(),
            data,
            "len {len}"
        );
    }
}

#[test]
fn a_wrong_key_refuses_to_open_and_writes_nothing() {
    let (out, image) = packed(Seal::Encrypted(&KEY));
    let rootfs = out.path().join("rootfs");
    let err = unpack(Seal::Encrypted(&[8; 16]), &image, &rootfs).unwrap_err();
    assert!(matches!(err, ImageError::WrongKey), "{err}");
    assert!(!rootfs.exists());
    assert_eq!(leftovers(out.path()), ["rootfs.img"]);
}

#[test]
fn every_flipped_byte_is_detected() {
    let data: Vec<u8> = (0..(2 * CHUNK_SIZE + 10))
        .map(|i| (i % 256) as u8)
        .collect();
    let sealed = sealed_bytes(Seal::Encrypted(&KEY), &data);
    let positions = (0..HEADER_LEN + TAG_LEN + 64)
        .chain((HEADER_LEN + TAG_LEN..sealed.len()).step_by(997))
        .chain(sealed.len() - 20..sealed.len());
    for at in positions {
        let mut bad = sealed.clone();
        bad[at] ^= 0x01;
        assert!(
            open_all(Seal::Encrypted(&KEY), &bad).is_err(),
            "flip at {at} went unnoticed"
        );
    }
}

#[test]
fn a_flipped_byte_in_a_chunk_names_the_chunk() {
    let data = vec![5u8; 2 * CHUNK_SIZE + 10];
    let mut sealed = sealed_bytes(Seal::Encrypted(&KEY), &data);
    let second = HEADER_LEN + TAG_LEN + CHUNK_SIZE + TAG_LEN + 3;
    sealed[second] ^= 0x80;
    assert!(matches!(
        open_all(Seal::Encrypted(&KEY), &sealed),
        Err(ImageError::Tampered { chunk: 1 })
    ));
}

#[test]
fn a_flipped_header_byte_fails_the_key_check() {
    let mut sealed = sealed_bytes(Seal::Encrypted(&KEY), b"data");
    sealed[17] ^= 1; // inside the nonce prefix
    assert!(matches!(
        open_all(Seal::Encrypted(&KEY), &sealed),
        Err(ImageError::WrongKey)
    ));
}

#[test]
fn reordered_chunks_are_refused() {
    let data: Vec<u8> = (0..(3 * CHUNK_SIZE))
        .map(|i| (i / CHUNK_SIZE) as u8)
        .collect();
    let sealed = sealed_bytes(Seal::Encrypted(&KEY), &data);
    let start = HEADER_LEN + TAG_LEN;
    let unit = CHUNK_SIZE + TAG_LEN;
    let mut swapped = sealed[..start].to_vec();
    swapped.extend_from_slice(&sealed[start + unit..start + 2 * unit]);
    swapped.extend_from_slice(&sealed[start..start + unit]);
    swapped.extend_from_slice(&sealed[start + 2 * unit..]);
    assert!(matches!(
        open_all(Seal::Encrypted(&KEY), &swapped),
        Err(ImageError::Tampered { chunk: 0 })
    ));
}

#[test]
fn truncation_at_a_chunk_boundary_is_refused() {
    let data = vec![1u8; 3 * CHUNK_SIZE];
    let sealed = sealed_bytes(Seal::Encrypted(&KEY), &data);
    let cut = HEADER_LEN + TAG_LEN + 2 * (CHUNK_SIZE + TAG_LEN);
    assert!(matches!(
        open_all(Seal::Encrypted(&KEY), &sealed[..cut]),
        Err(ImageError::Truncated { .. })
    ));
}

#[test]
fn truncation_inside_a_chunk_and_to_the_header_is_refused() {
    let sealed = sealed_bytes(Seal::Encrypted(&KEY), &vec![1u8; CHUNK_SIZE + 100]);
    for cut in [
        sealed.len() - 1,
        HEADER_LEN + TAG_LEN + 5,
        HEADER_LEN + TAG_LEN,
        HEADER_LEN + 3,
        4,
    ] {
        let err = open_all(Seal::Encrypted(&KEY), &sealed[..cut]).unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::Truncated { .. } | ImageError::Tampered { .. }
            ),
            "cut {cut}: {err}"
        );
    }
}

#[test]
fn trailing_bytes_after_the_last_chunk_are_refused() {
    let mut sealed = sealed_bytes(Seal::Encrypted(&KEY), b"short");
    sealed.extend_from_slice(&[0u8; 40]);
    assert!(open_all(Seal::Encrypted(&KEY), &sealed).is_err());
}

#[test]
fn a_flipped_byte_in_a_packed_image_writes_nothing() {
    let (out, image) = packed(Seal::Encrypted(&KEY));
    let mut bytes = fs::read(&image).unwrap();
    let at = bytes.len() - 30; // in the last chunk, after the archive's files were streamed
    bytes[at] ^= 0x20;
    fs::write(&image, &bytes).unwrap();
    let rootfs = out.path().join("rootfs");
    assert!(unpack(Seal::Encrypted(&KEY), &image, &rootfs).is_err());
    assert!(!rootfs.exists());
    assert_eq!(leftovers(out.path()), ["rootfs.img"]);
}

#[test]
fn a_refused_image_keeps_the_previous_rootfs() {
    let (out, image) = packed(Seal::Encrypted(&KEY));
    let rootfs = out.path().join("rootfs");
    unpack(Seal::Encrypted(&KEY), &image, &rootfs).unwrap();
    fs::write(rootfs.join("marker"), b"old").unwrap();
    assert!(unpack(Seal::Encrypted(&[0; 16]), &image, &rootfs).is_err());
    assert_eq!(fs::read(rootfs.join("marker")).unwrap(), b"old");
    unpack(Seal::Encrypted(&KEY), &image, &rootfs).unwrap();
    assert!(!rootfs.join("marker").exists());
    assert_eq!(leftovers(out.path()), ["rootfs", "rootfs.img"]);
}

#[test]
fn the_seal_must_match_the_image_type() {
    let sealed = sealed_bytes(Seal::IntegrityOnly, b"x");
    assert!(matches!(
        open_all(Seal::Encrypted(&KEY), &sealed),
        Err(ImageError::SealMismatch { .. })
    ));
    assert_eq!(open_all(Seal::IntegrityOnly, &sealed).unwrap(), b"x");
    let sealed = sealed_bytes(Seal::Encrypted(&KEY), b"x");
    assert!(matches!(
        open_all(Seal::IntegrityOnly, &sealed),
        Err(ImageError::SealMismatch { .. })
    ));
}

#[test]
fn other_files_and_versions_are_refused() {
    assert!(matches!(
        open_all(
            Seal::Encrypted(&KEY),
            b"hello world, this is not an image at all"
        ),
        Err(ImageError::NotAnImage)
    ));
    let mut sealed = sealed_bytes(Seal::Encrypted(&KEY), b"x");
    sealed[8] = 2;
    assert!(matches!(
        open_all(Seal::Encrypted(&KEY), &sealed),
        Err(ImageError::UnsupportedVersion { version: 2 })
    ));
}

/// A tar stream with one entry whose raw name and type are chosen by the test.
fn raw_tar(name: &[u8], kind: tar::EntryType, link: Option<&[u8]>, body: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_old();
    {
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        if let Some(link) = link {
            old.linkname[..link.len()].copy_from_slice(link);
        }
    }
    header.set_entry_type(kind);
    header.set_size(body.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(body);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn refused(tar_bytes: &[u8]) -> ImageError {
    let sealed = sealed_bytes(Seal::Encrypted(&KEY), tar_bytes);
    let (dir, result) = unpack_bytes(Seal::Encrypted(&KEY), &sealed);
    let err = result.expect_err("unsafe entry accepted");
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    err
}

#[test]
fn path_traversal_entries_are_refused() {
    for name in [&b"../escape"[..], b"a/../../escape", b"/etc/passwd"] {
        let err = refused(&raw_tar(name, tar::EntryType::Regular, None, b"x"));
        assert!(
            matches!(
                err,
                ImageError::UnsafeEntry { .. } | ImageError::Archive { .. }
            ),
            "{err}"
        );
    }
}

#[test]
fn escaping_symlinks_are_refused() {
    for target in [&b"/etc"[..], b"../..", b"a/../../x"] {
        let err = refused(&raw_tar(
            b"link",
            tar::EntryType::Symlink,
            Some(target),
            b"",
        ));
        assert!(matches!(err, ImageError::UnsafeEntry { .. }), "{err}");
    }
}

#[test]
fn entries_below_a_symlink_are_refused() {
    let mut stream = raw_tar(b"dir", tar::EntryType::Symlink, Some(b"."), b"");
    stream.truncate(512); // drop the end-of-archive blocks of the first entry
    stream.extend_from_slice(&raw_tar(b"dir/file", tar::EntryType::Regular, None, b"x"));
    let err = refused(&stream);
    assert!(matches!(err, ImageError::UnsafeEntry { .. }), "{err}");
}

#[test]
fn duplicate_entries_are_refused() {
    let mut stream = raw_tar(b"file", tar::EntryType::Regular, None, b"one");
    stream.truncate(1024);
    stream.extend_from_slice(&raw_tar(b"file", tar::EntryType::Regular, None, b"two"));
    assert!(matches!(refused(&stream), ImageError::UnsafeEntry { .. }));
}

#[test]
fn hard_links_and_devices_are_refused() {
    for kind in [
        tar::EntryType::Link,
        tar::EntryType::Char,
        tar::EntryType::Block,
        tar::EntryType::Fifo,
    ] {
        let err = refused(&raw_tar(b"node", kind, Some(b"other"), b""));
        assert!(
            matches!(err, ImageError::UnsafeEntry { .. }),
            "{kind:?}: {err}"
        );
    }
}

#[test]
fn setuid_bits_are_dropped() {
    let mut stream = raw_tar(b"tool", tar::EntryType::Regular, None, b"x");
    let mut header = tar::Header::from_byte_slice(&stream[..512]).clone();
    header.set_mode(0o4755);
    header.set_cksum();
    stream[..512].copy_from_slice(header.as_bytes());
    let sealed = sealed_bytes(Seal::Encrypted(&KEY), &stream);
    let (dir, result) = unpack_bytes(Seal::Encrypted(&KEY), &sealed);
    result.unwrap();
    let mode = fs::metadata(dir.path().join("rootfs/tool"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o755);
}

/// Pins the on-disk format as the module documentation states it, independently of the aead
/// crate's STREAM code: each chunk opens with AES-128-GCM under nonce = prefix || counter
/// (big-endian) || last flag and the header as AAD, and the key check under counter
/// 0xffffffff, flag 0x02.
#[test]
fn chunks_are_sealed_exactly_as_the_format_documents() {
    let plaintext: Vec<u8> = (0..CHUNK_SIZE + 5).map(|i| (i % 253) as u8).collect();
    let sealed = sealed_bytes(Seal::Encrypted(&KEY), &plaintext);
    assert_eq!(
        sealed.len(),
        HEADER_LEN + TAG_LEN + CHUNK_SIZE + 5 + 2 * TAG_LEN
    );
    let header = &sealed[..HEADER_LEN];
    let prefix = &header[16..23];
    let cipher = Aes128Gcm::new((&KEY).into());
    let nonce_of = |counter: u32, flag: u8| {
        let mut n = [0u8; 12];
        n[..7].copy_from_slice(prefix);
        n[7..11].copy_from_slice(&counter.to_be_bytes());
        n[11] = flag;
        n
    };
    let mut empty: [u8; 0] = [];
    let check = &sealed[HEADER_LEN..HEADER_LEN + TAG_LEN];
    cipher
        .decrypt_in_place_detached(
            (&nonce_of(u32::MAX, 2)).into(),
            header,
            &mut empty,
            Tag::from_slice(check),
        )
        .unwrap();
    let mut at = HEADER_LEN + TAG_LEN;
    let mut opened = Vec::new();
    for (counter, (len, flag)) in [(CHUNK_SIZE, 0u8), (5, 1u8)].into_iter().enumerate() {
        let mut body = sealed[at..at + len].to_vec();
        let tag = &sealed[at + len..at + len + TAG_LEN];
        cipher
            .decrypt_in_place_detached(
                (&nonce_of(counter as u32, flag)).into(),
                header,
                &mut body,
                Tag::from_slice(tag),
            )
            .unwrap();
        opened.extend_from_slice(&body);
        at += len + TAG_LEN;
    }
    assert_eq!(opened, plaintext);
}
