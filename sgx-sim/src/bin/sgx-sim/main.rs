//! `sgx-sim`: create a SIMULATED SGX platform, make enclave identities, quotes and RA-TLS
//! certificates with it, and serve its collateral as a loopback PCCS.
//!
//! Every line this binary prints says SIMULATED: nothing it makes may pass for hardware.
//! Exit codes: 0 success, 1 failure (the error chain is printed once to stderr), 2 usage.

#![forbid(unsafe_code)]

mod args;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use args::{Command, IdentityArgs, Init};
use sgx_sim::pccs::Pccs;
use sgx_sim::{Identity, PlatformOptions, SimPlatform, SimQuoteSource};

/// A failed command: the message for stderr and whether it was a usage error.
type Failure = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let command = match args::parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("sgx-sim: {e}\n\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    match run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sgx-sim: error: {}", chain(e.as_ref()));
            ExitCode::from(1)
        }
    }
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Init(init) => run_init(init),
        Command::Identity(id) => run_identity(id),
        Command::Quote {
            dir,
            identity,
            report_data,
            out,
        } => {
            let platform = SimPlatform::open(&dir)?;
            let identity = Identity::load(&identity)?;
            let quote = platform.quote(&identity, &report_data)?;
            write_file(&out, &quote, false)?;
            say(&format!(
                "wrote a SIMULATED quote ({} bytes, mr_enclave {}) to {} (platform {}; not hardware)",
                quote.len(),
                hex::encode(identity.mr_enclave),
                out.display(),
                dir.display()
            ));
            Ok(())
        }
        Command::Cert {
            dir,
            identity,
            out_cert,
            out_key,
        } => {
            let platform = SimPlatform::open(&dir)?;
            let source = SimQuoteSource::new(platform, Identity::load(&identity)?);
            let minted = ratls::cert::RaTlsIdentity::mint(&source)?;
            write_file(&out_cert, minted.cert_pem().as_bytes(), false)?;
            write_file(&out_key, minted.key_pem().as_bytes(), true)?;
            say(&format!(
                "wrote a SIMULATED RA-TLS certificate to {} and its key to {} (quote from the {})",
                out_cert.display(),
                out_key.display(),
                quote_source::QuoteSource::describe(&source)
            ));
            Ok(())
        }
        Command::Pccs { dir, listen } => run_pccs(&dir, listen),
        Command::Help => {
            say(args::USAGE);
            Ok(())
        }
        Command::Version => {
            say(&format!(
                "sgx-sim {} (a SIMULATED SGX platform)",
                env!("CARGO_PKG_VERSION")
            ));
            Ok(())
        }
    }
}

fn run_init(init: Init) -> Result<(), Failure> {
    let mut opts = PlatformOptions::default();
    opts.tcb_status = init.tcb_status;
    opts.advisory_ids = init.advisories;
    opts.revoke_pck = init.revoke_pck;
    opts.not_before = init.not_before.unwrap_or(opts.not_before);
    opts.not_after = init.not_after.unwrap_or(opts.not_after);
    opts.seed = init.seed;
    let platform = SimPlatform::create(&init.dir, &opts)?;
    let (from, until) = platform.validity();
    say(&format!(
        "created a SIMULATED SGX platform at {} (TCB status {}, PCK {}, collateral valid {from}..{until}); \
         its root CA {} is NOT Intel's: trust it only in tests",
        init.dir.display(),
        platform.tcb_status(),
        if platform.pck_revoked() {
            "revoked"
        } else {
            "not revoked"
        },
        init.dir.join(sgx_sim::files::ROOT_CA_PEM).display()
    ));
    Ok(())
}

fn run_identity(args: IdentityArgs) -> Result<(), Failure> {
    let mut id = Identity::random(args.seed)?;
    id.name = args.name;
    id.mr_enclave = args.mr_enclave.unwrap_or(id.mr_enclave);
    id.mr_signer = args.mr_signer.unwrap_or(id.mr_signer);
    id.isv_prod_id = args.isv_prod_id;
    id.isv_svn = args.isv_svn;
    id.config_svn = args.config_svn;
    id.debuggable = args.debuggable;
    let out = args.out.ok_or("identity needs --out")?;
    write_file(&out, id.to_json().as_bytes(), false)?;
    say(&format!(
        "wrote an enclave identity for SIMULATED quotes to {} (mr_enclave {}, mr_signer {})",
        out.display(),
        hex::encode(id.mr_enclave),
        hex::encode(id.mr_signer)
    ));
    Ok(())
}

fn run_pccs(dir: &Path, listen: std::net::SocketAddr) -> Result<(), Failure> {
    let platform = SimPlatform::open(dir)?;
    let pccs = Arc::new(Pccs::for_platform(&platform));
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| format!("installing a handler for signal {signal}: {e}"))?;
    }
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| format!("binding the PCCS to {listen}: {e}"))?;
    let bound = listener.local_addr()?;
    say(&format!(
        "sgx-sim SIMULATED PCCS for {} listening on {bound}",
        dir.display()
    ));
    let log: Arc<dyn Fn(&str) + Send + Sync> =
        Arc::new(|line: &str| eprintln!("sgx-sim pccs (SIMULATED): {line}"));
    pccs.serve(listener, &stop, log)?;
    eprintln!("sgx-sim pccs (SIMULATED): stopped");
    Ok(())
}

/// Writes `contents` to `path`; private files get mode 0600.
fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), Failure> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mode = if private { 0o600 } else { 0o644 };
    let context = |e: std::io::Error| format!("writing {}: {e}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(context)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(context)?;
    file.write_all(contents).map_err(context)?;
    Ok(())
}

/// One line on stdout, flushed (tests wait for "listening on").
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// "outer: inner: innermost".
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
