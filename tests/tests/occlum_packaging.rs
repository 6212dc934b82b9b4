//! Pins the Occlum packaging that cannot run here (no SGX, no Occlum): the copy_bom files, the
//! Occlum.json jq edits applied to Occlum's own default Occlum.json (690d5dbf), `build.sh`'s
//! Occlum-mode prerequisites (never Debian's musl), the glibc check of the enclave binaries,
//! and `run.sh stop` reaching `occlum run`'s child. Each fails if its fix regresses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e_tests::workspace_root;
use serde_json::Value;

fn configs() -> PathBuf {
    workspace_root().join("occlum-configs")
}

/// The `files:` entries under `- target: <target>` of a copy_bom file (its flat layout).
fn bom_files(yaml: &str, target: &str) -> Vec<String> {
    let mut inside = false;
    let mut files = Vec::new();
    for line in yaml.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("- target:") {
            inside = rest.trim() == target;
        } else if inside && t.starts_with("- ") && !t.ends_with(':') {
            files.push(t.trim_start_matches("- ").to_owned());
        }
    }
    files
}

#[test]
fn the_kms_image_carries_the_name_service_modules_glibc_2_31_loads_at_run_time() {
    let yaml = std::fs::read_to_string(configs().join("server.yaml")).unwrap();
    let libs = bom_files(&yaml, "/opt/occlum/glibc/lib");
    for lib in ["libnss_files.so.2", "libnss_dns.so.2", "libresolv.so.2"] {
        assert!(
            libs.contains(&format!("/opt/occlum/glibc/lib/{lib}")),
            "{lib} missing from server.yaml: {libs:?}"
        );
    }
}

#[test]
fn both_images_carry_the_qcnl_configuration() {
    let yaml = std::fs::read_to_string(configs().join("server.yaml")).unwrap();
    assert_eq!(bom_files(&yaml, "/etc"), ["${QCNL_CONF}"]);
    let build = std::fs::read_to_string(workspace_root().join("build.sh")).unwrap();
    assert!(build.contains("QCNL_CONF=$DEMO/sgx_default_qcnl.conf"));
    assert!(
        build.contains(
            "install -m 0644 \"$DEMO/sgx_default_qcnl.conf\" initfs/etc/sgx_default_qcnl.conf"
        ),
        "the client's initfs must get the QCNL file (init reads etc/sgx_default_qcnl.conf)"
    );
}

fn occlum_default_json() -> Value {
    let path = workspace_root().join("tests/testdata/occlum-690d5dbf/Occlum.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// `jq --argjson debuggable false -f <jq> <json>`.
fn jq(filter: &str, input: &Value) -> Value {
    let dir = e2e_tests::temp_dir("e2e");
    let file = dir.path().join("Occlum.json");
    std::fs::write(&file, serde_json::to_vec(input).unwrap()).unwrap();
    let out = Command::new("jq")
        .args(["--argjson", "debuggable", "false", "-f"])
        .arg(configs().join(filter))
        .arg(&file)
        .output()
        .expect("running jq (.ci/run installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_client_edits_let_init_read_its_two_variables_from_the_host() {
    let edited = jq("client.Occlum.jq", &occlum_default_json());
    assert_eq!(
        edited["env"]["untrusted"],
        serde_json::json!([
            "EXAMPLE",
            "OCCLUM_INIT_RA_KMS_SERVER",
            "OCCLUM_INIT_RA_PCCS_URL"
        ])
    );
    // Occlum's own default variables stay; the seed's settings are applied.
    assert_eq!(edited["env"]["default"], serde_json::json!(["OCCLUM=yes"]));
    assert_eq!(edited["metadata"]["version_number"], 88);
    assert_eq!(edited["metadata"]["enable_kss"], true);
    assert_eq!(edited["metadata"]["debuggable"], false);
    // Applying the edits again (a rebuild on an edited Occlum.json) changes nothing.
    assert_eq!(jq("client.Occlum.jq", &edited), edited);
    // An Occlum.json without env.untrusted gets the two variables as well.
    let mut bare = occlum_default_json();
    bare["env"].as_object_mut().unwrap().remove("untrusted");
    let edited = jq("client.Occlum.jq", &bare);
    assert_eq!(
        edited["env"]["untrusted"],
        serde_json::json!(["OCCLUM_INIT_RA_KMS_SERVER", "OCCLUM_INIT_RA_PCCS_URL"])
    );
}

#[test]
fn the_server_edits_apply_to_occlums_default_occlum_json() {
    let edited = jq("server.Occlum.jq", &occlum_default_json());
    assert_eq!(edited["metadata"]["product_id"], 1);
    assert_eq!(edited["resource_limits"]["user_space_max_size"], "500MB");
    // The KMS reads nothing from the host's environment.
    assert_eq!(edited["env"]["untrusted"], serde_json::json!(["EXAMPLE"]));
}

#[test]
fn the_cluster_edits_apply_on_top_of_the_server_edits() {
    let server = jq("server.Occlum.jq", &occlum_default_json());
    let cluster = jq("cluster.Occlum.jq", &server);
    assert_eq!(cluster["resource_limits"]["max_num_of_threads"], 64);
    // Everything else is the server's: cluster mode's host inputs are argv, not env.
    let mut expected = server.clone();
    expected["resource_limits"]["max_num_of_threads"] = 64.into();
    assert_eq!(cluster, expected);
    assert_eq!(cluster["env"]["untrusted"], serde_json::json!(["EXAMPLE"]));
}

#[test]
fn the_example_cluster_json_has_exactly_the_documented_fields() {
    let text = std::fs::read(configs().join("cluster.example.json")).unwrap();
    let value: Value = serde_json::from_slice(&text).unwrap();
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "cluster_id",
            "max_stale_secs",
            "operators",
            "replica_policy"
        ]
    );
    assert!(["same-enclave", "same-signer"].contains(&value["replica_policy"].as_str().unwrap()));
    let op = &value["operators"][0];
    assert_eq!(op["spki_sha256"].as_str().unwrap().len(), 64);
    assert!(op["name"].is_string());
}

fn write_script(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A PATH with only stand-ins: an Occlum host as root, without musl-gcc, with an apt-get that
/// records what it was asked to install.
fn occlum_host(dir: &Path, with_occlum_gcc: bool) -> Command {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["dirname", "cat", "grep", "sed", "seq", "sleep"] {
        std::os::unix::fs::symlink(which(tool), bin.join(tool)).unwrap();
    }
    for tool in [
        "cargo", "cc", "c++", "cmake", "curl", "jq", "copy_bom", "occlum",
    ] {
        write_script(&bin, tool, "exit 0");
    }
    write_script(&bin, "id", "echo 0");
    write_script(
        &bin,
        "rustup",
        "echo x86_64-unknown-linux-musl; echo x86_64-unknown-linux-gnu",
    );
    let log = dir.join("apt.log");
    write_script(
        &bin,
        "apt-get",
        &format!("echo \"$@\" >> {}", log.display()),
    );
    let toolchain = dir.join("occlum-gcc");
    std::fs::create_dir_all(toolchain.join("bin")).unwrap();
    if with_occlum_gcc {
        write_script(&toolchain.join("bin"), "occlum-gcc", "exit 0");
    }
    let glibc = dir.join("glibc");
    std::fs::create_dir_all(&glibc).unwrap();
    std::fs::write(glibc.join("libc.so.6"), b"").unwrap();
    // By absolute path: with PATH replaced, Command would look for bash in the stand-ins.
    let mut cmd = Command::new(which("bash"));
    cmd.arg(workspace_root().join("build.sh"))
        .env_clear()
        .env("PATH", &bin)
        .env("BUILD_CHECK_ONLY", "1")
        .env("OCCLUM_TOOLCHAIN", &toolchain)
        .env("OCCLUM_GLIBC", &glibc)
        .env("DEMO_DIR", dir.join("demo"));
    cmd
}

fn which(tool: &str) -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .unwrap();
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

#[test]
fn build_sh_on_an_occlum_host_never_installs_debian_musl() {
    let dir = e2e_tests::temp_dir("e2e");
    let out = occlum_host(dir.path(), true).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("prerequisites ok (occlum mode)"),
        "{stdout}"
    );
    let apt = std::fs::read_to_string(dir.path().join("apt.log")).unwrap_or_default();
    assert!(!apt.contains("musl"), "build.sh asked apt-get for: {apt}");
}

#[test]
fn build_sh_on_an_occlum_host_without_occlum_gcc_names_it() {
    let dir = e2e_tests::temp_dir("e2e");
    let out = occlum_host(dir.path(), false).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("occlum-gcc (Occlum's musl toolchain"),
        "{stderr}"
    );
    let apt = std::fs::read_to_string(dir.path().join("apt.log")).unwrap_or_default();
    assert!(!apt.contains("musl"), "build.sh asked apt-get for: {apt}");
}

fn check_glibc(args: &[&str], bin: &Path) -> (bool, String) {
    let out = Command::new(configs().join("check-glibc.sh"))
        .args(args)
        .arg(bin)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_glibc_check_refuses_a_binary_that_needs_a_newer_glibc_than_occlums() {
    // This test executable is linked against the host's glibc, like the KMS and the app.
    let me = std::env::current_exe().unwrap();
    let (ok, said) = check_glibc(&["--max", "2.2.5"], &me);
    assert!(!ok, "{said}");
    assert!(said.contains("FAIL"), "{said}");
    assert!(said.contains("provides only up to GLIBC_2.2.5"), "{said}");
    assert!(said.contains(&me.display().to_string()), "{said}");
    // Against the glibc it was linked with, it passes.
    let (ok, said) = check_glibc(&["--glibc", "/lib/x86_64-linux-gnu/libc.so.6"], &me);
    assert!(ok, "{said}");
    // An Occlum glibc that is not there is named.
    let (ok, said) = check_glibc(&["--glibc", "/nonexistent/libc.so.6"], &me);
    assert!(!ok);
    assert!(said.contains("/nonexistent/libc.so.6"), "{said}");
}

#[test]
fn run_sh_stop_stops_the_whole_process_group_of_occlum_run() {
    let dir = e2e_tests::temp_dir("e2e");
    let demo = dir.path().join("demo");
    std::fs::create_dir_all(demo.join("run")).unwrap();
    std::fs::write(demo.join("mode"), "occlum\n").unwrap();
    // A stand-in for `occlum run`: a bash wrapper whose child (occlum-run) ignores the
    // wrapper's death, started as run.sh's spawn starts it (its own process group).
    let child_pid = dir.path().join("child.pid");
    let mut wrapper = Command::new("setsid")
        .args([
            "bash",
            "-c",
            &format!("sleep 300 & echo $! > {}; wait", child_pid.display()),
        ])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !child_pid.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let child: i32 = std::fs::read_to_string(&child_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    std::fs::write(demo.join("run/kms.pid"), wrapper.id().to_string()).unwrap();
    let out = Command::new(workspace_root().join("run.sh"))
        .arg("stop")
        .env("DEMO_DIR", &demo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = wrapper.wait();
    let alive = Path::new(&format!("/proc/{child}")).exists()
        && !std::fs::read_to_string(format!("/proc/{child}/stat"))
            .unwrap_or_default()
            .contains(") Z ");
    assert!(!alive, "the wrapper's child {child} survived ./run.sh stop");
    assert!(!demo.join("run/kms.pid").exists());
}
