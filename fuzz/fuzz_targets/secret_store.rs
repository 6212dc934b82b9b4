//! Fuzz target: the secret store's parser (`secret_config.json`, and what an admin `put_secret`
//! feeds the same decoder) must never panic, and a store it accepts must persist to a document
//! that parses back to the same names and ACLs (the admin API rewrites the sealed file so).
#![no_main]

use libfuzzer_sys::fuzz_target;
use zeroize::Zeroizing;

// The store is the kms package's `kms_secrets` library, but that package links grpcio (a C++
// build the fuzzer should not carry); the file depends on ratls, serde and zeroize only.
#[path = "../../kms/src/secrets.rs"]
#[allow(dead_code)]
mod secrets;

fuzz_target!(|data: &[u8]| {
    let Ok(store) = secrets::SecretStore::from_json(data) else {
        return;
    };
    let mut doc = Vec::new();
    store
        .persist_with(|json| {
            doc = json.to_vec();
            Ok::<(), ()>(())
        })
        .unwrap();
    let back = secrets::SecretStore::from_json(&doc).expect("a persisted store parses");
    assert!(back.acls().eq(store.acls()));
    // Putting the first name again with its own value list keeps the store's names.
    if let Some((name, allow)) = store.acls().next() {
        let again = store.with_put(name, Zeroizing::new("AAAA".into()), allow.map(<[String]>::to_vec));
        let again = again.expect("a valid base64 value under an existing name");
        assert!(again.acls().map(|(n, _)| n).eq(store.acls().map(|(n, _)| n)));
    }
});
