//! Fuzz target: what init does with a `SecretReply` from the KMS, peer bytes all the way down.
//! The protobuf decoder, the secret's base64 (bare or JSON-quoted, as Occlum's server sends
//! it) and the `image_key` text parser must never panic, and what they accept must be exactly
//! what an encoder would have produced: the text re-encodes to the same field, the secret is
//! canonical base64 within its limit, and an image key prints back in Occlum's form.
#![no_main]

use base64::Engine as _;
use grsecret::client::{MAX_SECRET_LEN, decode_secret, decode_string_field1, encode_string_field1};
use init::image_key::ImageKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = decode_string_field1(data) {
        let again = decode_string_field1(&encode_string_field1(&text)).ok();
        assert_eq!(again.as_deref().map(String::as_str), Some(text.as_str()));
        secret(text.as_bytes());
    }
    // The inner layers on their own, so the fuzzer need not build a protobuf to reach them.
    secret(data);
    image_key(data);
});

fn secret(text: &[u8]) {
    let Ok(bytes) = decode_secret(text) else {
        return;
    };
    assert!(!bytes.is_empty() && bytes.len() <= MAX_SECRET_LEN);
    let inner = text
        .strip_prefix(b"\"")
        .and_then(|t| t.strip_suffix(b"\""))
        .unwrap_or(text);
    let canonical = base64::engine::general_purpose::STANDARD.encode(&*bytes);
    assert_eq!(canonical.as_bytes(), inner, "accepted non-canonical base64");
    image_key(&bytes);
}

fn image_key(text: &[u8]) {
    let Ok(key) = ImageKey::parse(text) else {
        return;
    };
    // Accepted text is 16 groups of two hex digits, then only line endings.
    let printed: Vec<String> = key.bytes().iter().map(|b| format!("{b:02x}")).collect();
    let body = text
        .iter()
        .rposition(|&b| b != b'\n' && b != b'\r')
        .map_or(&text[..0], |end| &text[..=end]);
    assert!(body.eq_ignore_ascii_case(printed.join("-").as_bytes()));
}
