//! Command-line parsing in two stages: raw words into a [`Command`] with typed values, each
//! checked once; nothing past this module sees an unparsed string.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use cliargs::{ArgError, Args, Token};
use sgx_sim::TcbStatus;

pub const USAGE: &str = "\
sgx-sim: a SIMULATED SGX DCAP platform for machines without SGX (not hardware, not Intel)

usage:
  sgx-sim init <DIR> [--tcb-status STATUS] [--advisory ID]... [--revoke-pck]
                     [--not-before UNIX] [--not-after UNIX] [--seed N]
  sgx-sim identity --out FILE [--name NAME] [--mr-enclave HEX] [--mr-signer HEX]
                     [--isv-prod-id N] [--isv-svn N] [--config-svn N] [--debuggable] [--seed N]
  sgx-sim quote <DIR> --identity FILE --report-data HEX --out FILE
  sgx-sim cert <DIR> --identity FILE --out-cert PEM --out-key PEM
  sgx-sim pccs <DIR> --listen ADDR
  sgx-sim help | --help | --version

STATUS: UpToDate (default), SWHardeningNeeded, ConfigurationNeeded,
  ConfigurationAndSWHardeningNeeded, OutOfDate, OutOfDateConfigurationNeeded, Revoked.
--not-before/--not-after: validity of certificates, CRLs and collateral (default: now - 1 day
  to now + 30 days). --seed makes keys reproducible (test vectors only).
--report-data: up to 64 bytes of hex, zero-padded to 64. --listen 127.0.0.1:0 picks a port.

Flags: --flag VALUE or --flag=VALUE, each at most once (but --advisory); paths may be any bytes.
exit codes: 0 success, 1 failure, 2 usage error";

/// A validated command.
#[derive(Debug)]
pub enum Command {
    Init(Init),
    Identity(IdentityArgs),
    Quote {
        dir: PathBuf,
        identity: PathBuf,
        report_data: [u8; 64],
        out: PathBuf,
    },
    Cert {
        dir: PathBuf,
        identity: PathBuf,
        out_cert: PathBuf,
        out_key: PathBuf,
    },
    Pccs {
        dir: PathBuf,
        listen: SocketAddr,
    },
    Help,
    Version,
}

#[derive(Debug)]
pub struct Init {
    pub dir: PathBuf,
    pub tcb_status: TcbStatus,
    pub advisories: Vec<String>,
    pub revoke_pck: bool,
    pub not_before: Option<u64>,
    pub not_after: Option<u64>,
    pub seed: Option<u64>,
}

#[derive(Debug, Default)]
pub struct IdentityArgs {
    pub out: Option<PathBuf>,
    pub name: Option<String>,
    pub mr_enclave: Option<[u8; 32]>,
    pub mr_signer: Option<[u8; 32]>,
    pub isv_prod_id: u16,
    pub isv_svn: u16,
    pub config_svn: u16,
    pub debuggable: bool,
    pub seed: Option<u64>,
}

/// A usage error: what was wrong with the command line.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn usage(msg: impl Into<String>) -> UsageError {
    UsageError(msg.into())
}

impl From<ArgError> for UsageError {
    fn from(e: ArgError) -> Self {
        UsageError(e.to_string())
    }
}

/// Parses the arguments after the program name (tokenised by `cliargs`, the workspace's one
/// command-line convention: see the README's "Command lines").
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let mut args = Args::new(args);
    let sub = match args.next_token()? {
        None => return Err(usage("missing subcommand")),
        Some(Token::Help) => return Ok(Command::Help),
        Some(Token::Version) => return Ok(Command::Version),
        Some(Token::Word(word)) if word == "help" => return Ok(Command::Help),
        Some(Token::Word(word)) => word,
        Some(Token::Flag(flag)) => return Err(ArgError::UnknownOption(flag).into()),
        Some(Token::Rest(_)) => return Err(usage("missing subcommand")),
    };
    let mut w = Words { args, dir: None };
    match sub.to_str() {
        Some("init") => parse_init(&mut w),
        Some("identity") => parse_identity(&mut w),
        Some("quote") => parse_quote(&mut w),
        Some("cert") => parse_cert(&mut w),
        Some("pccs") => parse_pccs(&mut w),
        _ => Err(usage(format!("unknown subcommand {sub:?}"))),
    }
}

/// A subcommand's flags, with its one positional argument (the platform directory).
struct Words {
    args: Args,
    dir: Option<PathBuf>,
}

/// What the subcommand's loop sees next.
enum Next {
    Flag(String),
    Help,
    Version,
}

impl Words {
    /// The next flag; positional words go to the platform directory.
    fn next(&mut self) -> Result<Option<Next>, UsageError> {
        loop {
            match self.args.next_token()? {
                None => return Ok(None),
                Some(Token::Help) => return Ok(Some(Next::Help)),
                Some(Token::Version) => return Ok(Some(Next::Version)),
                Some(Token::Flag(flag)) => return Ok(Some(Next::Flag(flag))),
                Some(Token::Word(word)) => self.positional(word)?,
                Some(Token::Rest(rest)) => {
                    for word in rest {
                        self.positional(word)?;
                    }
                }
            }
        }
    }

    fn positional(&mut self, word: OsString) -> Result<(), UsageError> {
        if self.dir.is_some() {
            return Err(ArgError::UnexpectedArgument(word).into());
        }
        self.dir = Some(PathBuf::from(word));
        Ok(())
    }

    fn dir(&mut self, sub: &str) -> Result<PathBuf, UsageError> {
        self.dir
            .take()
            .ok_or_else(|| usage(format!("{sub} needs a platform directory")))
    }
}

/// Runs `flag` for every flag of a subcommand; `--help`/`--version` end the loop with `Some`.
fn each_flag(
    w: &mut Words,
    mut flag: impl FnMut(&mut Words, &str) -> Result<(), UsageError>,
) -> Result<Option<Command>, UsageError> {
    while let Some(next) = w.next()? {
        match next {
            Next::Help => return Ok(Some(Command::Help)),
            Next::Version => return Ok(Some(Command::Version)),
            Next::Flag(name) => flag(w, &name)?,
        }
    }
    Ok(None)
}

fn unknown(flag: &str) -> UsageError {
    ArgError::UnknownOption(flag.to_owned()).into()
}

fn parse_init(w: &mut Words) -> Result<Command, UsageError> {
    let mut init = Init {
        dir: PathBuf::new(),
        tcb_status: TcbStatus::UpToDate,
        advisories: Vec::new(),
        revoke_pck: false,
        not_before: None,
        not_after: None,
        seed: None,
    };
    if let Some(early) = each_flag(w, |w, flag| {
        match flag {
            "--tcb-status" => {
                init.tcb_status = w
                    .args
                    .text(flag)?
                    .parse()
                    .map_err(|e| usage(format!("--tcb-status: {e}")))?;
            }
            // Repeatable: one --advisory per advisory ID.
            "--advisory" => init.advisories.push(w.args.each_text(flag)?),
            "--revoke-pck" => {
                w.args.switch(flag)?;
                init.revoke_pck = true;
            }
            "--not-before" => init.not_before = Some(number(flag, &w.args.text(flag)?)?),
            "--not-after" => init.not_after = Some(number(flag, &w.args.text(flag)?)?),
            "--seed" => init.seed = Some(number(flag, &w.args.text(flag)?)?),
            _ => return Err(unknown(flag)),
        }
        Ok(())
    })? {
        return Ok(early);
    }
    init.dir = w.dir("init")?;
    Ok(Command::Init(init))
}

fn parse_identity(w: &mut Words) -> Result<Command, UsageError> {
    let mut id = IdentityArgs::default();
    if let Some(early) = each_flag(w, |w, flag| {
        match flag {
            "--out" => id.out = Some(w.args.path(flag)?),
            "--name" => id.name = Some(w.args.text(flag)?),
            "--mr-enclave" => id.mr_enclave = Some(hex_exact(flag, &w.args.text(flag)?)?),
            "--mr-signer" => id.mr_signer = Some(hex_exact(flag, &w.args.text(flag)?)?),
            "--isv-prod-id" => id.isv_prod_id = number(flag, &w.args.text(flag)?)?,
            "--isv-svn" => id.isv_svn = number(flag, &w.args.text(flag)?)?,
            "--config-svn" => id.config_svn = number(flag, &w.args.text(flag)?)?,
            "--debuggable" => {
                w.args.switch(flag)?;
                id.debuggable = true;
            }
            "--seed" => id.seed = Some(number(flag, &w.args.text(flag)?)?),
            _ => return Err(unknown(flag)),
        }
        Ok(())
    })? {
        return Ok(early);
    }
    if let Some(dir) = w.dir.take() {
        return Err(usage(format!("identity: unexpected argument {dir:?}")));
    }
    if id.out.is_none() {
        return Err(usage("identity needs --out FILE"));
    }
    Ok(Command::Identity(id))
}

fn parse_quote(w: &mut Words) -> Result<Command, UsageError> {
    let (mut identity, mut report_data, mut out) = (None, None, None);
    if let Some(early) = each_flag(w, |w, flag| {
        match flag {
            "--identity" => identity = Some(w.args.path(flag)?),
            "--report-data" => report_data = Some(report_data_hex(&w.args.text(flag)?)?),
            "--out" => out = Some(w.args.path(flag)?),
            _ => return Err(unknown(flag)),
        }
        Ok(())
    })? {
        return Ok(early);
    }
    Ok(Command::Quote {
        dir: w.dir("quote")?,
        identity: identity.ok_or_else(|| usage("quote needs --identity FILE"))?,
        report_data: report_data.ok_or_else(|| usage("quote needs --report-data HEX"))?,
        out: out.ok_or_else(|| usage("quote needs --out FILE"))?,
    })
}

fn parse_cert(w: &mut Words) -> Result<Command, UsageError> {
    let (mut identity, mut out_cert, mut out_key) = (None, None, None);
    if let Some(early) = each_flag(w, |w, flag| {
        match flag {
            "--identity" => identity = Some(w.args.path(flag)?),
            "--out-cert" => out_cert = Some(w.args.path(flag)?),
            "--out-key" => out_key = Some(w.args.path(flag)?),
            _ => return Err(unknown(flag)),
        }
        Ok(())
    })? {
        return Ok(early);
    }
    Ok(Command::Cert {
        dir: w.dir("cert")?,
        identity: identity.ok_or_else(|| usage("cert needs --identity FILE"))?,
        out_cert: out_cert.ok_or_else(|| usage("cert needs --out-cert PEM"))?,
        out_key: out_key.ok_or_else(|| usage("cert needs --out-key PEM"))?,
    })
}

fn parse_pccs(w: &mut Words) -> Result<Command, UsageError> {
    let mut listen = None;
    if let Some(early) = each_flag(w, |w, flag| {
        match flag {
            "--listen" => {
                let value = w.args.text(flag)?;
                listen = Some(
                    value
                        .parse::<SocketAddr>()
                        .map_err(|e| usage(format!("--listen {value:?}: {e} (want IP:PORT)")))?,
                );
            }
            _ => return Err(unknown(flag)),
        }
        Ok(())
    })? {
        return Ok(early);
    }
    Ok(Command::Pccs {
        dir: w.dir("pccs")?,
        listen: listen.ok_or_else(|| usage("pccs needs --listen ADDR"))?,
    })
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, UsageError>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e| usage(format!("{flag} {value:?}: {e}")))
}

fn hex_exact<const N: usize>(flag: &str, value: &str) -> Result<[u8; N], UsageError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(value, &mut out)
        .map_err(|e| usage(format!("{flag}: expected {} hex digits: {e}", 2 * N)))?;
    Ok(out)
}

fn report_data_hex(value: &str) -> Result<[u8; 64], UsageError> {
    let bytes = hex::decode(value).map_err(|e| usage(format!("--report-data: not hex: {e}")))?;
    if bytes.len() > 64 {
        return Err(usage(format!(
            "--report-data: {} bytes, at most 64",
            bytes.len()
        )));
    }
    let mut out = [0u8; 64];
    for (dst, src) in out.iter_mut().zip(&bytes) {
        *dst = *src;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Command, UsageError> {
        parse(line.split_whitespace().map(OsString::from))
    }

    #[test]
    fn init_takes_every_knob() {
        let Command::Init(init) = parse_str(
            "init d --tcb-status OutOfDate --advisory A --advisory B --revoke-pck --not-before 5 --not-after 9 --seed 3",
        )
        .unwrap() else {
            panic!("not init")
        };
        assert_eq!(init.dir, PathBuf::from("d"));
        assert_eq!(init.tcb_status, TcbStatus::OutOfDate);
        assert_eq!(init.advisories, ["A", "B"]);
        assert!(init.revoke_pck);
        assert_eq!(
            (init.not_before, init.not_after, init.seed),
            (Some(5), Some(9), Some(3))
        );
    }

    #[test]
    fn report_data_is_zero_padded_and_capped() {
        let Command::Quote { report_data, .. } =
            parse_str("quote d --identity i --report-data 4142 --out q").unwrap()
        else {
            panic!("not quote")
        };
        assert_eq!(&report_data[..3], b"AB\0");
        assert!(
            parse_str(&format!(
                "quote d --identity i --out q --report-data {}",
                "00".repeat(65)
            ))
            .is_err()
        );
    }

    #[test]
    fn mistakes_are_usage_errors() {
        for line in [
            "",
            "frobnicate",
            "init",
            "init d e",
            "init d --tcb-status Fine",
            "init d --seed -1",
            "init d --bogus",
            "quote d --identity i --out q",
            "pccs d --listen localhost",
            "identity",
            "identity --out f --mr-enclave 00",
            "identity --out f --out g",
            "quote d --identity i --identity j --report-data 00 --out q",
            "init d --revoke-pck=yes",
            "init d -x",
        ] {
            assert!(parse_str(line).is_err(), "{line:?} parsed");
        }
    }

    #[test]
    fn the_workspace_conventions_hold() {
        let Command::Pccs { listen, .. } = parse_str("pccs --listen=127.0.0.1:0 d").unwrap() else {
            panic!("not pccs")
        };
        assert_eq!(listen.port(), 0);
        assert!(matches!(parse_str("init d --help").unwrap(), Command::Help));
        assert!(matches!(parse_str("--version").unwrap(), Command::Version));
        let e = parse_str("cert d --out-key a --out-key b").unwrap_err();
        assert_eq!(e.0, "--out-key given twice");
        let e = parse_str("init d --frob").unwrap_err();
        assert_eq!(e.0, "unknown option --frob");
        // `--` ends the flags: a directory named like a flag.
        let Command::Init(init) = parse_str("init -- --d").unwrap() else {
            panic!("not init")
        };
        assert_eq!(init.dir, PathBuf::from("--d"));
    }

    #[test]
    fn paths_take_any_bytes_and_text_refuses_non_utf8_by_name() {
        use std::os::unix::ffi::OsStrExt as _;
        let raw = std::ffi::OsStr::from_bytes(b"p\xfflat");
        let words = |w: &[&std::ffi::OsStr]| parse(w.iter().map(|w| w.to_os_string()));
        let Command::Pccs { dir, .. } = words(&[
            "pccs".as_ref(),
            raw,
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
        ])
        .unwrap() else {
            panic!("not pccs")
        };
        assert_eq!(dir.as_os_str(), raw);
        let e = words(&["identity".as_ref(), "--name".as_ref(), raw]).unwrap_err();
        assert!(
            e.0.starts_with("--name ") && e.0.ends_with(": not UTF-8"),
            "{e}"
        );
    }
}
