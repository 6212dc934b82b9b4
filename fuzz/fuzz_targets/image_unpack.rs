//! Fuzz target: init's host-mode image unpacker (`init::image::unpack`). The host supplies
//! the image, so two kinds of input are tried: the raw bytes as an image (header, key check
//! and chunk parsing), and the bytes as the plaintext tar of a correctly sealed
//! integrity-only image, sealed here as the documented format says, so the fuzzer reaches
//! the archive's path-safety checks without forging tags. Unpacking must never panic, must
//! write nothing outside the rootfs it is given, and a refused image must leave nothing
//! behind.
#![no_main]

use std::fs;

use aes_gcm::aead::stream::{NewStream as _, StreamBE32, StreamPrimitive as _};
use aes_gcm::aead::{AeadInPlace as _, KeyInit as _};
use aes_gcm::Aes128Gcm;
use init::image::{self, Seal};
use libfuzzer_sys::fuzz_target;

/// Seals `tar` as an integrity-only image (all-zero key) with the smallest chunk size, so
/// multi-chunk inputs are cheap to reach.
fn seal(tar: &[u8]) -> Vec<u8> {
    let chunk_size = image::MIN_CHUNK_SIZE;
    let prefix = [0x5au8; 7];
    let mut header = Vec::with_capacity(image::HEADER_LEN);
    header.extend_from_slice(&image::MAGIC);
    header.extend_from_slice(&image::VERSION.to_le_bytes());
    header.extend_from_slice(&image::FLAG_INTEGRITY_ONLY.to_le_bytes());
    header.extend_from_slice(&(chunk_size as u32).to_le_bytes());
    header.extend_from_slice(&prefix);
    header.push(0);
    let cipher = Aes128Gcm::new(&[0u8; 16].into());
    let mut check_nonce = [0u8; 12];
    check_nonce[..7].copy_from_slice(&prefix);
    check_nonce[7..].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x02]);
    let check = cipher
        .encrypt_in_place_detached(&check_nonce.into(), &header, &mut [])
        .expect("key check");
    let mut out = header.clone();
    out.extend_from_slice(&check);
    let stream = StreamBE32::from_aead(cipher, (&prefix).into());
    let chunks: Vec<&[u8]> = if tar.is_empty() {
        vec![&[]]
    } else {
        tar.chunks(chunk_size).collect()
    };
    for (i, chunk) in chunks.iter().enumerate() {
        let mut buf = chunk.to_vec();
        stream
            .encrypt_in_place(i as u32, i + 1 == chunks.len(), &header, &mut buf)
            .expect("chunk");
        out.extend_from_slice(&buf);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        seal(rest)
    };
    let base = tempfile::tempdir().expect("temporary directory");
    let image_path = base.path().join("rootfs.img");
    let rootfs = base.path().join("rootfs");
    fs::write(&image_path, &bytes).expect("write image");
    let result = image::unpack(Seal::IntegrityOnly, &image_path, &rootfs);
    // Nothing but the image and (when accepted) the rootfs may be left in the directory.
    let mut left: Vec<String> = fs::read_dir(base.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let expected: &[&str] = if result.is_ok() {
        &["rootfs", "rootfs.img"]
    } else {
        &["rootfs.img"]
    };
    assert_eq!(left, expected, "{result:?}");
});
