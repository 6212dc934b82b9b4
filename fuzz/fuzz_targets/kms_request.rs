//! Fuzz target: the KMS's decoder of what clients send (`SecretRequest`, and
//! `HealthCheckRequest` of the same layout) must never panic, and a name it accepts must be
//! within its limit and come back unchanged from a fresh encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The KMS is a binary on grpcio (a C++ build the fuzzer should not carry); the decoder it
// runs is the grsecret crate's, which depends on std, zeroize and base64 only.
use grsecret::client::encode_string_field1;
use grsecret::server as proto;

fuzz_target!(|data: &[u8]| {
    if let Ok(name) = proto::decode_name(data) {
        assert!(name.len() <= proto::MAX_NAME_LEN);
        let again = proto::decode_name(&encode_string_field1(&name));
        assert_eq!(again.as_deref(), Ok(name.as_str()));
    }
});
