//! Command-line parsing in two stages: raw words into a [`Command`] with typed values, each
//! checked once; nothing past this module sees an unparsed string.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

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
  sgx-sim help

STATUS: UpToDate (default), SWHardeningNeeded, ConfigurationNeeded,
  ConfigurationAndSWHardeningNeeded, OutOfDate, OutOfDateConfigurationNeeded, Revoked.
--not-before/--not-after: validity of certificates, CRLs and collateral (default: now - 1 day
  to now + 30 days). --seed makes keys reproducible (test vectors only).
--report-data: up to 64 bytes of hex, zero-padded to 64. --listen 127.0.0.1:0 picks a port.

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

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let args: Vec<String> = args
        .into_iter()
        .map(|a| {
            a.into_string()
                .map_err(|a| usage(format!("argument {a:?} is not UTF-8")))
        })
        .collect::<Result<_, _>>()?;
    let mut words = Words {
        args: args.into_iter(),
    };
    let Some(sub) = words.next() else {
        return Err(usage("missing subcommand"));
    };
    match sub.as_str() {
        "init" => parse_init(&mut words).map(Command::Init),
        "identity" => parse_identity(&mut words).map(Command::Identity),
        "quote" => parse_quote(&mut words),
        "cert" => parse_cert(&mut words),
        "pccs" => parse_pccs(&mut words),
        "help" | "--help" | "-h" => Ok(Command::Help),
        other => Err(usage(format!("unknown subcommand {other:?}"))),
    }
}

struct Words {
    args: std::vec::IntoIter<String>,
}

impl Words {
    fn next(&mut self) -> Option<String> {
        self.args.next()
    }

    fn value(&mut self, flag: &str) -> Result<String, UsageError> {
        self.next()
            .ok_or_else(|| usage(format!("{flag} needs a value")))
    }
}

fn parse_init(w: &mut Words) -> Result<Init, UsageError> {
    let mut dir = None;
    let mut init = Init {
        dir: PathBuf::new(),
        tcb_status: TcbStatus::UpToDate,
        advisories: Vec::new(),
        revoke_pck: false,
        not_before: None,
        not_after: None,
        seed: None,
    };
    while let Some(word) = w.next() {
        match word.as_str() {
            "--tcb-status" => {
                init.tcb_status = w
                    .value(&word)?
                    .parse()
                    .map_err(|e| usage(format!("--tcb-status: {e}")))?;
            }
            "--advisory" => init.advisories.push(w.value(&word)?),
            "--revoke-pck" => init.revoke_pck = true,
            "--not-before" => init.not_before = Some(number(&word, &w.value(&word)?)?),
            "--not-after" => init.not_after = Some(number(&word, &w.value(&word)?)?),
            "--seed" => init.seed = Some(number(&word, &w.value(&word)?)?),
            _ => positional(&mut dir, word)?,
        }
    }
    init.dir = dir.ok_or_else(|| usage("init needs a platform directory"))?;
    Ok(init)
}

fn parse_identity(w: &mut Words) -> Result<IdentityArgs, UsageError> {
    let mut id = IdentityArgs::default();
    while let Some(word) = w.next() {
        match word.as_str() {
            "--out" => id.out = Some(PathBuf::from(w.value(&word)?)),
            "--name" => id.name = Some(w.value(&word)?),
            "--mr-enclave" => id.mr_enclave = Some(hex_exact(&word, &w.value(&word)?)?),
            "--mr-signer" => id.mr_signer = Some(hex_exact(&word, &w.value(&word)?)?),
            "--isv-prod-id" => id.isv_prod_id = number(&word, &w.value(&word)?)?,
            "--isv-svn" => id.isv_svn = number(&word, &w.value(&word)?)?,
            "--config-svn" => id.config_svn = number(&word, &w.value(&word)?)?,
            "--debuggable" => id.debuggable = true,
            "--seed" => id.seed = Some(number(&word, &w.value(&word)?)?),
            other => return Err(usage(format!("identity: unexpected argument {other:?}"))),
        }
    }
    if id.out.is_none() {
        return Err(usage("identity needs --out FILE"));
    }
    Ok(id)
}

fn parse_quote(w: &mut Words) -> Result<Command, UsageError> {
    let (mut dir, mut identity, mut report_data, mut out) = (None, None, None, None);
    while let Some(word) = w.next() {
        match word.as_str() {
            "--identity" => identity = Some(PathBuf::from(w.value(&word)?)),
            "--report-data" => report_data = Some(report_data_hex(&w.value(&word)?)?),
            "--out" => out = Some(PathBuf::from(w.value(&word)?)),
            _ => positional(&mut dir, word)?,
        }
    }
    Ok(Command::Quote {
        dir: dir.ok_or_else(|| usage("quote needs a platform directory"))?,
        identity: identity.ok_or_else(|| usage("quote needs --identity FILE"))?,
        report_data: report_data.ok_or_else(|| usage("quote needs --report-data HEX"))?,
        out: out.ok_or_else(|| usage("quote needs --out FILE"))?,
    })
}

fn parse_cert(w: &mut Words) -> Result<Command, UsageError> {
    let (mut dir, mut identity, mut out_cert, mut out_key) = (None, None, None, None);
    while let Some(word) = w.next() {
        match word.as_str() {
            "--identity" => identity = Some(PathBuf::from(w.value(&word)?)),
            "--out-cert" => out_cert = Some(PathBuf::from(w.value(&word)?)),
            "--out-key" => out_key = Some(PathBuf::from(w.value(&word)?)),
            _ => positional(&mut dir, word)?,
        }
    }
    Ok(Command::Cert {
        dir: dir.ok_or_else(|| usage("cert needs a platform directory"))?,
        identity: identity.ok_or_else(|| usage("cert needs --identity FILE"))?,
        out_cert: out_cert.ok_or_else(|| usage("cert needs --out-cert PEM"))?,
        out_key: out_key.ok_or_else(|| usage("cert needs --out-key PEM"))?,
    })
}

fn parse_pccs(w: &mut Words) -> Result<Command, UsageError> {
    let (mut dir, mut listen) = (None, None);
    while let Some(word) = w.next() {
        match word.as_str() {
            "--listen" => {
                let value = w.value(&word)?;
                listen = Some(
                    value
                        .parse::<SocketAddr>()
                        .map_err(|e| usage(format!("--listen {value:?}: {e} (want IP:PORT)")))?,
                );
            }
            _ => positional(&mut dir, word)?,
        }
    }
    Ok(Command::Pccs {
        dir: dir.ok_or_else(|| usage("pccs needs a platform directory"))?,
        listen: listen.ok_or_else(|| usage("pccs needs --listen ADDR"))?,
    })
}

fn positional(slot: &mut Option<PathBuf>, word: String) -> Result<(), UsageError> {
    if word.starts_with("--") {
        return Err(usage(format!("unknown option {word:?}")));
    }
    if slot.is_some() {
        return Err(usage(format!("unexpected argument {word:?}")));
    }
    *slot = Some(PathBuf::from(word));
    Ok(())
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
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
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
        ] {
            assert!(parse_str(line).is_err(), "{line:?} parsed");
        }
    }
}
