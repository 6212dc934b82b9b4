//! Test support, included by path (`#[path]`) from the kms and init tests that drive their real
//! binaries "inside Occlum": an `LD_PRELOAD` shim, compiled with `cc`, that makes `uname` report
//! sysname `Occlum`, which is exactly what `occlum_dcap::is_occlum` checks. Nothing in the
//! production code reads a variable or flag for it. Never built into a shipped binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const SHIM_C: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>
#include <sys/utsname.h>
int uname(struct utsname *buf) {
    int (*real)(struct utsname *) = (int (*)(struct utsname *))dlsym(RTLD_NEXT, "uname");
    int ret = real(buf);
    if (ret == 0) {
        memset(buf->sysname, 0, sizeof buf->sysname);
        strcpy(buf->sysname, "Occlum");
    }
    return ret;
}
"#;

/// The shim's path, built once per test process; set it as `LD_PRELOAD`.
pub fn shim() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("occlum-uname-shim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("uname_occlum.c");
        std::fs::write(&src, SHIM_C).unwrap();
        let lib = dir.join("uname_occlum.so");
        let status = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&lib)
            .arg(&src)
            .arg("-ldl")
            .status()
            .expect("running cc");
        assert!(status.success(), "cc failed to build the uname shim");
        lib
    })
}
