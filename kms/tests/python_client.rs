//! Wire compatibility with a client that is not ours: Python grpcio (the same C core as
//! Occlum's C++ client) fetches secrets over mutual TLS and gets Occlum's quoted base64 form.

mod common;

use std::process::Command;

use base64::Engine as _;
use common::*;

#[test]
fn a_python_grpcio_client_gets_secrets_in_occlums_wire_form() {
    let fx = Fixture::start("python");
    let cert = fx.sim.client(&fx.app);
    std::fs::write(fx.dir.path().join("client.crt"), &cert.cert_pem).unwrap();
    std::fs::write(fx.dir.path().join("client.key"), &cert.key_pem).unwrap();
    std::fs::write(fx.dir.path().join("kms.crt"), &fx.kms.cert_pem).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/get_secret.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&fx.kms.addr)
        .arg(fx.dir.path().join("kms.crt"))
        .arg(fx.dir.path().join("client.crt"))
        .arg(fx.dir.path().join("client.key"))
        .arg(KMS_TARGET_NAME)
        .args(["flask_cert", "image_key", "binary_blob"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "python client failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    let all = secrets();
    for (line, index) in lines.iter().zip([0usize, 2, 3]) {
        let fields: Vec<&str> = line.split(' ').collect();
        let (name, value) = (all[index].0, &all[index].1);
        assert_eq!(fields[0], name);
        let wire = hex::decode(fields[1]).unwrap();
        let quoted = format!(
            "\"{}\"",
            base64::engine::general_purpose::STANDARD.encode(value)
        );
        assert_eq!(
            wire,
            quoted.as_bytes(),
            "the reply must be Occlum's JSON-quoted base64"
        );
        assert_eq!(hex::decode(fields[2]).unwrap(), *value);
    }

    // A Python client without a certificate is refused with UNAUTHENTICATED.
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import grpc,sys\n\
             c=grpc.ssl_channel_credentials(root_certificates=open(sys.argv[2],'rb').read())\n\
             ch=grpc.secure_channel(sys.argv[1],c,options=(('grpc.ssl_target_name_override',sys.argv[3]),))\n\
             try:\n  ch.unary_unary('/ratls.GrSecret/GetSecret')(b'\\x0a\\x09image_key',timeout=20); print('RELEASED')\n\
             except grpc.RpcError as e:\n  print(e.code().name)\n",
        )
        .arg(&fx.kms.addr)
        .arg(fx.dir.path().join("kms.crt"))
        .arg(KMS_TARGET_NAME)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "UNAUTHENTICATED",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_logs_clean(&fx.kms, &secrets());
}
