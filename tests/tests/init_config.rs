//! End to end: Occlum's own `init_ra_conf.json` template, byte for byte, drives a real boot
//! (with `OCCLUM_INIT_RA_KMS_SERVER` pointing at the KMS, as Occlum documents), and config
//! mistakes exit with the config code and name the field.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::Command;

use e2e_tests::{Deployment, init_bin, run};

const EXIT_USAGE: i32 = 2;
const EXIT_CONFIG: i32 = 3;

/// `init/testdata/occlum/init_grpc_ratls.json`, Occlum's template (see its README).
fn occlum_template() -> Vec<u8> {
    std::fs::read(e2e_tests::workspace_root().join("init/testdata/occlum/init_grpc_ratls.json"))
        .unwrap()
}

fn host_command(d: &Deployment) -> Command {
    let mut cmd = Command::new(init_bin());
    cmd.arg("host")
        .arg("--config-dir")
        .arg(d.path("initfs"))
        .arg("--sim-platform")
        .arg(&d.sim.dir)
        .arg("--sim-identity")
        .arg(&d.app_identity)
        .arg("--image")
        .arg(d.path("rootfs.img"))
        .arg("--rootfs")
        .arg(d.rootfs())
        .env_remove("OCCLUM_INIT_RA_KMS_SERVER")
        .env_remove("OCCLUM_INIT_RA_PCCS_URL");
    cmd
}

#[test]
fn occlums_unchanged_template_boots_with_the_env_override() {
    let d = Deployment::new(&[("demo_key", "/etc/demo_key", b"demo secret\n")]);
    std::fs::write(d.path("initfs/etc/init_ra_conf.json"), occlum_template()).unwrap();
    let kms = d.start_kms("127.0.0.1:0");
    let out = run(host_command(&d).env("OCCLUM_INIT_RA_KMS_SERVER", &kms.addr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        std::fs::read(d.rootfs().join("etc/demo_key")).unwrap(),
        b"demo secret\n"
    );
    assert!(
        stderr.contains("env OCCLUM_INIT_RA_KMS_SERVER"),
        "says where the address came from:\n{stderr}"
    );
}

#[test]
fn a_bad_kms_keys_path_exits_with_the_config_code_naming_the_field() {
    let d = Deployment::new(&[("k", "/etc/k", b"v")]);
    d.write_init_conf(|conf| conf["kms_keys"][0]["path"] = "/etc/../../escape".into());
    let out = run(host_command(&d).args(["--kms-server", "127.0.0.1:1"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{stderr}");
    assert!(
        stderr.contains("kms_keys[0].path") && stderr.contains("init_ra_conf.json"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_image_type_exits_with_the_config_code() {
    let d = Deployment::new(&[("k", "/etc/k", b"v")]);
    std::fs::write(
        d.path("initfs/etc/image_config.json"),
        br#"{"image_type": "plain"}"#,
    )
    .unwrap();
    let out = run(host_command(&d).args(["--kms-server", "127.0.0.1:1"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{stderr}");
    assert!(stderr.contains("image_type"), "{stderr}");
}

#[test]
fn a_bad_command_line_exits_with_the_usage_code() {
    let out = run(Command::new(init_bin()).args(["host", "--config-dir"]));
    assert_eq!(out.status.code(), Some(EXIT_USAGE));
    let out = run(Command::new(init_bin()).arg("--help"));
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("exit codes"));
}

#[test]
fn a_bad_kms_servers_entry_exits_with_the_config_code_naming_it() {
    let d = Deployment::new(&[("k", "/etc/k", b"v")]);
    d.write_init_conf(|conf| conf["kms_servers"] = serde_json::json!(["127.0.0.1:2", "nope"]));
    let out = run(&mut host_command(&d));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{stderr}");
    assert!(
        stderr.contains("kms_servers[1]") && stderr.contains("\"nope\" is not host:port"),
        "{stderr}"
    );
}

#[test]
fn a_bad_address_list_in_the_env_exits_with_the_config_code_naming_the_variable() {
    let d = Deployment::new(&[("k", "/etc/k", b"v")]);
    std::fs::write(d.path("initfs/etc/init_ra_conf.json"), occlum_template()).unwrap();
    let out = run(host_command(&d).env("OCCLUM_INIT_RA_KMS_SERVER", "127.0.0.1:1,,127.0.0.1:2"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{stderr}");
    assert!(
        stderr.contains("env OCCLUM_INIT_RA_KMS_SERVER") && stderr.contains("is empty"),
        "{stderr}"
    );
}
