//! Fuzz target: the reply of `kms.Replica/GetClusterKey` (kms/src/cluster/keywire.rs) as a
//! joining replica parses it. The peer was attested first, but its reply is still untrusted
//! bytes: no panic, only a 32-byte key is accepted, and what parses re-encodes to a reply that
//! parses to the same values.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../kms/src/cluster/keywire.rs"]
#[allow(dead_code)]
mod keywire;

fuzz_target!(|data: &[u8]| {
    let Ok(share) = keywire::decode(data, "fuzz") else {
        return;
    };
    assert!(share.epoch >= 1);
    let again = keywire::encode("fuzz", &share);
    let back = keywire::decode(&again, "fuzz").expect("a re-encoded reply parses");
    assert_eq!((back.epoch, back.generation), (share.epoch, share.generation));
    assert_eq!(*back.key, *share.key);
    assert_eq!(back.state_sha256, share.state_sha256);
});
