//! Fuzz target: the KMS's decoder of what clients send (`SecretRequest`, and
//! `HealthCheckRequest` of the same layout) must never panic, and a name it accepts must be
//! within its limit and come back unchanged from a fresh encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The KMS is a binary on grpcio (a C++ build the fuzzer should not carry); its protobuf
// module depends on std and zeroize only, so it is compiled here as it is.
#[path = "../../kms/src/proto.rs"]
#[allow(dead_code)]
mod proto;

fuzz_target!(|data: &[u8]| {
    if let Ok(name) = proto::decode_name(data) {
        assert!(name.len() <= proto::MAX_NAME_LEN);
        let again = proto::decode_name(&grpc_unary::proto::encode_string_field1(&name));
        assert_eq!(again.as_deref(), Ok(name.as_str()));
    }
});
