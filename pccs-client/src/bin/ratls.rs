//! `ratls inspect`: the operator's dry run of the verification pipeline on a quote or an RA-TLS
//! certificate, printing every measurement and the verdict of each check.
//!
//! Exit codes: 0 everything asked for passed; 1 verification or policy rejected the evidence;
//! 2 usage error or unreadable input.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use cliargs::{ArgError, Token};
use pccs_client::PccsClient;
use ratls::cert;
use ratls::collateral::CollateralSource;
use ratls::policy::{RaPolicy, TcbPolicy};
use ratls::quote::Quote;
use ratls::verify::{self, TrustAnchor};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

const USAGE: &str = "\
usage: ratls inspect <FILE> [--collateral FILE | --pccs-url URL] [--root-ca PEM]
                     [--policy JSON] [--at UNIX_SECS] [--json]
       ratls --help | --version

FILE is a raw SGX DCAP quote (v3) or an RA-TLS certificate (PEM or DER).
  --collateral FILE  verify DCAP with this collateral (dcap-qvl QuoteCollateralV3 JSON)
  --pccs-url URL     verify DCAP with collateral fetched from this PCCS (v4 API)
  --root-ca PEM      DANGER: trust this root CA instead of Intel's SGX Root CA
                     (for sgx-sim's simulated platform or a test PKI)
  --policy JSON      apply this ra_config / dynamic_config.json (measurements, TCB statuses);
                     without it only the default TCB policy (UpToDate only) applies
  --at UNIX_SECS     verify as of this time instead of now
  --json             print one JSON object instead of text

Flags: --flag VALUE or --flag=VALUE, each at most once; paths may be any bytes.
Exit status: 0 all requested checks passed (or help/version printed), 1 a check rejected the evidence, 2 usage or input error.";

const NO_SIMULATED_ROOTS: &str = "--root-ca: this ratls was built without the `simulation` feature, so it trusts only Intel's SGX Root CA (rebuild with --features ratls/simulation)";

fn main() -> ExitCode {
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(Parsed::Inspect(args)) => args,
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("ratls {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ratls: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("ratls: {e}");
            ExitCode::from(2)
        }
    }
}

/// What the command line asks for.
enum Parsed {
    Inspect(Args),
    Help,
    Version,
}

/// Raw arguments, as typed.
#[derive(Default)]
struct Args {
    file: Option<PathBuf>,
    collateral: Option<PathBuf>,
    pccs_url: Option<String>,
    root_ca: Option<PathBuf>,
    policy: Option<PathBuf>,
    at: Option<String>,
    json: bool,
}

/// Tokenised by `cliargs`, the workspace's one command-line convention (README "Command
/// lines"); a usage error is returned as its message.
fn parse_args(argv: impl IntoIterator<Item = OsString>) -> Result<Parsed, String> {
    let mut it = cliargs::Args::new(argv);
    let fail = |e: ArgError| e.to_string();
    match it.next_token().map_err(fail)? {
        Some(Token::Word(w)) if w == "inspect" => {}
        Some(Token::Help) => return Ok(Parsed::Help),
        Some(Token::Version) => return Ok(Parsed::Version),
        None => return Err("missing command (inspect)".to_owned()),
        Some(Token::Word(w)) => return Err(format!("unknown command {w:?}")),
        Some(Token::Flag(flag)) => return Err(ArgError::UnknownOption(flag).to_string()),
        Some(Token::Rest(_)) => return Err("missing command (inspect)".to_owned()),
    }
    let mut args = Args::default();
    let mut words = Vec::new();
    while let Some(token) = it.next_token().map_err(fail)? {
        let flag = match token {
            Token::Help => return Ok(Parsed::Help),
            Token::Version => return Ok(Parsed::Version),
            Token::Flag(flag) => flag,
            Token::Word(word) => {
                words.push(word);
                continue;
            }
            Token::Rest(rest) => {
                words.extend(rest);
                continue;
            }
        };
        match flag.as_str() {
            "--collateral" => args.collateral = Some(it.path(&flag).map_err(fail)?),
            "--pccs-url" => args.pccs_url = Some(it.text(&flag).map_err(fail)?),
            "--root-ca" => args.root_ca = Some(it.path(&flag).map_err(fail)?),
            "--policy" => args.policy = Some(it.path(&flag).map_err(fail)?),
            "--at" => args.at = Some(it.text(&flag).map_err(fail)?),
            "--json" => {
                it.switch(&flag).map_err(fail)?;
                args.json = true;
            }
            _ => return Err(ArgError::UnknownOption(flag).to_string()),
        }
    }
    let mut words = words.into_iter();
    args.file = words.next().map(PathBuf::from);
    if let Some(extra) = words.next() {
        return Err(ArgError::UnexpectedArgument(extra).to_string());
    }
    Ok(Parsed::Inspect(args))
}

/// Validated options.
struct Inspect {
    file: PathBuf,
    collateral: Option<Arc<dyn CollateralSource>>,
    anchor: TrustAnchor,
    policy: Option<RaPolicy>,
    now: u64,
    json: bool,
}

fn validate(args: Args) -> Result<Inspect, String> {
    let file = args
        .file
        .ok_or_else(|| "inspect needs a FILE (see ratls --help)".to_owned())?;
    let anchor = match args.root_ca {
        None => TrustAnchor::intel(),
        Some(_) if !ratls::danger::SIMULATED_ROOTS => {
            return Err(NO_SIMULATED_ROOTS.into());
        }
        Some(path) => {
            let pem =
                std::fs::read(&path).map_err(|e| format!("--root-ca {}: {e}", path.display()))?;
            let der = CertificateDer::from_pem_slice(&pem)
                .map_err(|e| format!("--root-ca {}: not a PEM certificate: {e}", path.display()))?;
            let anchor =
                ratls::danger::simulated_root_if_built(der.to_vec(), path.display().to_string())
                    .ok_or(NO_SIMULATED_ROOTS)?;
            eprintln!(
                "ratls: WARNING: trusting {} INSTEAD OF Intel's SGX Root CA; quotes that pass are not proven to come from SGX hardware",
                path.display()
            );
            anchor
        }
    };
    let collateral: Option<Arc<dyn CollateralSource>> = match (args.collateral, args.pccs_url) {
        (Some(_), Some(_)) => return Err("--collateral and --pccs-url exclude each other".into()),
        (Some(path), None) => Some(Arc::new(
            pccs_client::read_collateral_file(&path).map_err(|e| e.to_string())?,
        )),
        (None, Some(url)) => Some(Arc::new(
            PccsClient::new(&url).with_trust_anchor(anchor.clone()),
        )),
        (None, None) => None,
    };
    let policy = match args.policy {
        None => None,
        Some(path) => {
            let bytes =
                std::fs::read(&path).map_err(|e| format!("--policy {}: {e}", path.display()))?;
            Some(
                RaPolicy::from_json(&bytes, &path.display().to_string())
                    .map_err(|e| e.to_string())?,
            )
        }
    };
    let now = match args.at {
        Some(at) => at
            .parse()
            .map_err(|_| format!("--at {at:?}: expected unix seconds"))?,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| format!("system clock before 1970: {e}"))?
            .as_secs(),
    };
    Ok(Inspect {
        file,
        collateral,
        anchor,
        policy,
        now,
        json: args.json,
    })
}

fn run(args: Args) -> Result<bool, String> {
    let opts = validate(args)?;
    let bytes = std::fs::read(&opts.file).map_err(|e| format!("{}: {e}", opts.file.display()))?;
    let report = inspect(&opts, &bytes)?;
    if opts.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if !report.accepted() {
        if let Some(first) = report.reasons.first() {
            eprintln!("ratls: rejected: {first}");
        }
    }
    Ok(report.accepted())
}

/// Everything `inspect` found.
struct Report {
    input: String,
    quote: Quote,
    binding: Option<Result<String, String>>,
    trust_anchor: Option<String>,
    tcb_status: Option<String>,
    advisory_ids: Vec<String>,
    policy_verdict: Option<String>,
    reasons: Vec<String>,
}

fn inspect(opts: &Inspect, bytes: &[u8]) -> Result<Report, String> {
    let mut reasons = Vec::new();
    let (input, quote_bytes, quote, binding) = if bytes.starts_with(&[3, 0]) {
        let quote = Quote::parse(bytes).map_err(|e| format!("{}: {e}", opts.file.display()))?;
        ("raw quote".to_owned(), bytes.to_vec(), quote, None)
    } else {
        let der = if bytes.starts_with(b"-----BEGIN") {
            CertificateDer::from_pem_slice(bytes)
                .map_err(|e| format!("{}: not a PEM certificate: {e}", opts.file.display()))?
                .to_vec()
        } else {
            bytes.to_vec()
        };
        let evidence = cert::extract(&der).map_err(|e| format!("{}: {e}", opts.file.display()))?;
        let binding = cert::check_self_signature(&der)
            .and_then(|()| evidence.check_binding())
            .map(|()| {
                format!(
                    "{:?}: report data commits to the certificate's key",
                    evidence.format
                )
            })
            .map_err(|e| e.to_string());
        if let Err(e) = &binding {
            reasons.push(e.clone());
        }
        (
            format!("RA-TLS certificate ({:?})", evidence.format),
            evidence.quote_bytes,
            evidence.quote,
            Some(binding),
        )
    };

    let default_tcb = TcbPolicy::default();
    let tcb_policy = opts.policy.as_ref().map_or(&default_tcb, RaPolicy::tcb);
    let mut report = Report {
        input,
        quote,
        binding,
        trust_anchor: None,
        tcb_status: None,
        advisory_ids: Vec::new(),
        policy_verdict: None,
        reasons,
    };
    if let Some(source) = &opts.collateral {
        report.trust_anchor = Some(opts.anchor.describe());
        let outcome = source
            .collateral(&report.quote, opts.now)
            .map_err(verify::VerifyError::from)
            .and_then(|c| {
                verify::dcap_verify(
                    &opts.anchor,
                    &quote_bytes,
                    &c,
                    opts.now,
                    tcb_policy.grace_secs(),
                )
            });
        match outcome {
            Ok(verdict) => {
                report.tcb_status = Some(verdict.tcb_status.clone());
                report.advisory_ids = verdict.advisory_ids.clone();
                if let Err(e) = verify::check_tcb(tcb_policy, &verdict) {
                    report.reasons.push(e.to_string());
                }
            }
            Err(e) => report.reasons.push(e.to_string()),
        }
    }
    if let Some(policy) = &opts.policy {
        match policy.evaluate(&report.quote.body) {
            Ok(m) => {
                report.policy_verdict = Some(match &m.name {
                    Some(name) => format!("matched sgx_mrs entry {} ({name:?})", m.index),
                    None => format!("matched sgx_mrs entry {}", m.index),
                })
            }
            Err(rejection) => {
                report.policy_verdict = Some(rejection.to_string());
                report
                    .reasons
                    .push(format!("measurement policy: {rejection}"));
            }
        }
    }
    Ok(report)
}

impl Report {
    fn accepted(&self) -> bool {
        self.reasons.is_empty()
    }

    fn to_text(&self) -> String {
        let b = &self.quote.body;
        let mut out = String::new();
        let mut line = |k: &str, v: String| out.push_str(&format!("{k:<13} {v}\n"));
        line("input:", self.input.clone());
        line("mr_enclave:", hex::encode(b.mr_enclave));
        line("mr_signer:", hex::encode(b.mr_signer));
        line("isv_prod_id:", b.isv_prod_id.to_string());
        line("isv_svn:", b.isv_svn.to_string());
        line("config_svn:", b.config_svn.to_string());
        line("debuggable:", b.debuggable().to_string());
        line("report_data:", hex::encode(b.report_data));
        if let Some(binding) = &self.binding {
            line(
                "key binding:",
                match binding {
                    Ok(ok) => format!("ok ({ok})"),
                    Err(e) => format!("FAILED: {e}"),
                },
            );
        }
        match &self.trust_anchor {
            Some(anchor) => line("trust anchor:", anchor.clone()),
            None => line(
                "dcap:",
                "not checked (give --collateral or --pccs-url)".into(),
            ),
        }
        if let Some(status) = &self.tcb_status {
            line("tcb_status:", status.clone());
            line(
                "advisories:",
                if self.advisory_ids.is_empty() {
                    "none".into()
                } else {
                    self.advisory_ids.join(", ")
                },
            );
        }
        line(
            "policy:",
            self.policy_verdict
                .clone()
                .unwrap_or_else(|| "not checked (give --policy)".into()),
        );
        line(
            "verdict:",
            if self.accepted() {
                "ACCEPTED".into()
            } else {
                "REJECTED".into()
            },
        );
        for reason in &self.reasons {
            line("  reason:", reason.clone());
        }
        out
    }

    fn to_json(&self) -> serde_json::Value {
        let b = &self.quote.body;
        serde_json::json!({
            "input": self.input,
            "mr_enclave": hex::encode(b.mr_enclave),
            "mr_signer": hex::encode(b.mr_signer),
            "isv_prod_id": b.isv_prod_id,
            "isv_svn": b.isv_svn,
            "config_svn": b.config_svn,
            "debuggable": b.debuggable(),
            "report_data": hex::encode(b.report_data),
            "key_binding": self.binding.as_ref().map(|r| r.is_ok()),
            "trust_anchor": self.trust_anchor,
            "tcb_status": self.tcb_status,
            "advisory_ids": self.advisory_ids,
            "policy": self.policy_verdict,
            "accepted": self.accepted(),
            "reasons": self.reasons,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<Parsed, String> {
        parse_args(words.iter().map(OsString::from))
    }

    fn inspect(words: &[&str]) -> Args {
        match parse(words).unwrap() {
            Parsed::Inspect(args) => args,
            _ => panic!("not inspect"),
        }
    }

    #[test]
    fn inline_values_equal_separate_ones_and_a_flag_may_follow_the_file() {
        let a = inspect(&[
            "inspect",
            "--at=5",
            "q.bin",
            "--collateral",
            "c.json",
            "--json",
        ]);
        assert_eq!(a.at.as_deref(), Some("5"));
        assert_eq!(a.file, Some(PathBuf::from("q.bin")));
        assert_eq!(a.collateral, Some(PathBuf::from("c.json")));
        assert!(a.json);
        let a = inspect(&["inspect", "--", "--q.bin"]);
        assert_eq!(a.file, Some(PathBuf::from("--q.bin")));
    }

    #[test]
    fn mistakes_are_refused_by_name() {
        for (words, want) in [
            (
                &["inspect", "q", "--at", "1", "--at", "2"][..],
                "--at given twice",
            ),
            (&["inspect", "q", "--frob"], "unknown option --frob"),
            (&["inspect", "q", "--json=yes"], "--json takes no value"),
            (&["inspect", "q", "--policy"], "--policy needs a value"),
            (&["inspect", "q", "r"], "unexpected argument \"r\""),
            (&["frob"], "unknown command \"frob\""),
        ] {
            assert_eq!(parse(words).err().as_deref(), Some(want), "{words:?}");
        }
    }

    #[test]
    fn help_and_version_are_not_errors() {
        assert!(matches!(parse(&["--help"]), Ok(Parsed::Help)));
        assert!(matches!(parse(&["inspect", "q", "-h"]), Ok(Parsed::Help)));
        assert!(matches!(parse(&["-V"]), Ok(Parsed::Version)));
    }

    #[test]
    fn a_non_utf8_path_is_kept_and_a_non_utf8_url_refused_by_name() {
        use std::os::unix::ffi::OsStrExt as _;
        let raw = std::ffi::OsStr::from_bytes(b"q\xff.bin");
        let words = |w: &[&std::ffi::OsStr]| parse_args(w.iter().map(|w| w.to_os_string()));
        let Ok(Parsed::Inspect(a)) = words(&["inspect".as_ref(), raw]) else {
            panic!("not inspect")
        };
        assert_eq!(a.file.unwrap().as_os_str(), raw);
        let e = words(&["inspect".as_ref(), "q".as_ref(), "--pccs-url".as_ref(), raw])
            .err()
            .unwrap();
        assert!(
            e.starts_with("--pccs-url ") && e.ends_with(": not UTF-8"),
            "{e}"
        );
    }
}
