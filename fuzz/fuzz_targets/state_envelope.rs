//! Fuzz target: the cluster state envelope (kms/src/cluster/envelope.rs) read from etcd, which
//! the host controls. `peek_header` and `open_state` must never panic on any bytes, nothing
//! opens without the key, and a record sealed from the input opens to it and refuses any
//! one-byte change.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The kms package links grpcio (a C++ build the fuzzer should not carry); the envelope depends
// on ring and zeroize only.
#[path = "../../kms/src/cluster/envelope.rs"]
#[allow(dead_code)]
mod envelope;

use envelope::{ClusterKey, EnvelopeError};

fuzz_target!(|data: &[u8]| {
    let key = ClusterKey::from_bytes(&[0x42; 32]).expect("32 bytes");
    // Arbitrary bytes as a record: no panic, and (without the key's records) never opened.
    let _ = envelope::peek_header(data);
    match envelope::open_state(&key, "fuzz", data) {
        Ok(_) => panic!("arbitrary bytes opened as a state record"),
        Err(EnvelopeError::Authentication { .. })
        | Err(EnvelopeError::Truncated { .. })
        | Err(EnvelopeError::RecordTooLarge { .. })
        | Err(EnvelopeError::BadMagic { .. })
        | Err(EnvelopeError::ZeroCounter { .. }) => {}
        Err(other) => panic!("unexpected error {other:?}"),
    }
    // The input as a plaintext: round trip, then a one-byte change chosen by the input.
    let Some((&pick, plain)) = data.split_first() else {
        return;
    };
    let record = envelope::seal_state(&key, "fuzz", 1, 2, &[7; 32], plain).expect("seals");
    let opened = envelope::open_state(&key, "fuzz", &record).expect("opens");
    assert_eq!(opened.plaintext.as_slice(), plain);
    assert_eq!((opened.epoch, opened.generation), (1, 2));
    let mut altered = record.clone();
    let at = usize::from(pick) * 7919 % altered.len();
    if let Some(byte) = altered.get_mut(at) {
        *byte ^= 0x01;
    }
    assert!(envelope::open_state(&key, "fuzz", &altered).is_err());
    assert!(envelope::open_state(&key, "fuzz2", &record).is_err());
});
