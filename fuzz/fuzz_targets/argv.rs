//! Fuzz target: a command line, which inside Occlum the untrusted host writes (argv). The input
//! is split at NUL bytes into arguments (any bytes, as argv may hold). The one tokeniser
//! (`cliargs`) must never panic, and init's parser under the Occlum rules must never accept
//! host mode or `pack-image` there: only no arguments (Occlum mode), help or version.
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt as _;

use cliargs::{Args, Token};
use init::cli::{Command, parse_in};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let argv: Vec<OsString> = if data.is_empty() {
        Vec::new()
    } else {
        data.split(|b| *b == 0)
            .map(|a| OsString::from_vec(a.to_vec()))
            .collect()
    };
    tokenise(argv.clone());
    match parse_in(argv.clone(), true) {
        Ok(Command::Occlum) => assert!(argv.is_empty()),
        Ok(Command::Help | Command::Version) | Err(_) => {}
        Ok(other) => panic!("inside Occlum init accepted {other:?} from {argv:?}"),
    }
    let _ = parse_in(argv, false);
});

/// Reads every token, taking a value for every flag as a binary would.
fn tokenise(argv: Vec<OsString>) {
    let mut args = Args::new(argv);
    while let Ok(Some(token)) = args.next_token() {
        match token {
            Token::Flag(flag) if flag.len() % 2 == 0 => {
                let _ = args.text(&flag);
            }
            Token::Flag(flag) => {
                let _ = args.switch(&flag);
            }
            Token::Rest(_) => break,
            Token::Help | Token::Version | Token::Word(_) => {}
        }
    }
}
