//! The one command-line tokeniser of the workspace's five binaries (`kms`, `init`, `app`,
//! `ratls`, `sgx-sim`), on `lexopt`, so that they all read a command line the same way:
//!
//! - `--flag value` and `--flag=value` are the same; a flag that takes no value refuses one
//!   (`--json=yes`: "--json takes no value").
//! - A flag given twice is refused by name ("--out given twice"), unless the binary documents
//!   it as repeatable ([`Args::each_text`], e.g. `sgx-sim init --advisory`).
//! - `-h`/`--help` and `-V`/`--version` are tokens of their own ([`Token::Help`],
//!   [`Token::Version`]); the binaries print them on stdout and exit 0. Tokens are read left to
//!   right and the first of help, version or a mistake decides.
//! - `--` ends the flags: everything after it is handed over verbatim ([`Token::Rest`]).
//! - Arguments are `OsString`s: a path flag ([`Args::path`]) takes any bytes; a text flag
//!   ([`Args::text`]) refuses a value that is not UTF-8, naming the flag.
//! - No short flags but `-h` and `-V`; any other (`-x`) is an unknown option.
//!
//! The binaries turn an [`ArgError`] into their usage error (exit code 2, stderr). This crate
//! only tokenises: which flags exist, what they mean and what is refused where (inside Occlum)
//! stays in each binary's `cli` module.

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

/// One token of a command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Token {
    /// `-h` or `--help`.
    Help,
    /// `-V` or `--version`.
    Version,
    /// A long flag, with its dashes (`"--listen"`); read its value with [`Args::value`],
    /// [`Args::text`] or [`Args::path`], or accept it with [`Args::switch`].
    Flag(String),
    /// A positional argument.
    Word(OsString),
    /// Everything after `--`, verbatim (possibly nothing).
    Rest(Vec<OsString>),
}

/// What a command without positional arguments reads ([`Args::next_flag`]).
#[derive(Debug, PartialEq, Eq)]
pub enum FlagToken {
    /// `-h` or `--help`.
    Help,
    /// `-V` or `--version`.
    Version,
    /// A long flag, with its dashes, as [`Token::Flag`].
    Flag(String),
}

/// What is wrong with a command line, before any binary-specific check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    /// A flag this binary (or subcommand) does not have.
    UnknownOption(String),
    /// A flag that takes a value came last.
    MissingValue(String),
    /// A single-valued flag given twice.
    GivenTwice(String),
    /// A text flag's value is not UTF-8.
    NotUtf8 { flag: String, value: OsString },
    /// A switch given a value (`--json=yes`).
    TakesNoValue(String),
    /// A positional argument where none (or no more) is expected.
    UnexpectedArgument(OsString),
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownOption(flag) => write!(f, "unknown option {flag}"),
            Self::MissingValue(flag) => write!(f, "{flag} needs a value"),
            Self::GivenTwice(flag) => write!(f, "{flag} given twice"),
            Self::NotUtf8 { flag, value } => write!(f, "{flag} {value:?}: not UTF-8"),
            Self::TakesNoValue(flag) => write!(f, "{flag} takes no value"),
            Self::UnexpectedArgument(arg) => write!(f, "unexpected argument {arg:?}"),
        }
    }
}

impl std::error::Error for ArgError {}

/// A command line being tokenised.
pub struct Args {
    parser: lexopt::Parser,
    /// Single-valued flags already read.
    seen: Vec<String>,
}

impl Args {
    /// The arguments after the program name.
    pub fn new(args: impl IntoIterator<Item = OsString>) -> Self {
        Self {
            parser: lexopt::Parser::from_args(args),
            seen: Vec::new(),
        }
    }

    /// The next token; `None` at the end.
    pub fn next_token(&mut self) -> Result<Option<Token>, ArgError> {
        if let Some(mut raw) = self.parser.try_raw_args() {
            if raw.peek().is_some_and(|a| a == "--") {
                raw.next();
                return Ok(Some(Token::Rest(raw.collect())));
            }
        }
        let token = match self.parser.next().map_err(from_lexopt)? {
            None => return Ok(None),
            Some(lexopt::Arg::Short('h') | lexopt::Arg::Long("help")) => Token::Help,
            Some(lexopt::Arg::Short('V') | lexopt::Arg::Long("version")) => Token::Version,
            Some(lexopt::Arg::Long(name)) => Token::Flag(format!("--{name}")),
            Some(lexopt::Arg::Short(c)) => return Err(ArgError::UnknownOption(format!("-{c}"))),
            Some(lexopt::Arg::Value(word)) => Token::Word(word),
        };
        if matches!(token, Token::Help | Token::Version) {
            if let Some(flag) = self.pending_value_flag(&token) {
                return Err(ArgError::TakesNoValue(flag));
            }
        }
        Ok(Some(token))
    }

    /// [`Args::next_token`] for a command that takes no positional argument: a word, or one
    /// after `--`, is [`ArgError::UnexpectedArgument`]; a `--` with nothing after it ends the
    /// line.
    pub fn next_flag(&mut self) -> Result<Option<FlagToken>, ArgError> {
        Ok(match self.next_token()? {
            None => None,
            Some(Token::Help) => Some(FlagToken::Help),
            Some(Token::Version) => Some(FlagToken::Version),
            Some(Token::Flag(flag)) => Some(FlagToken::Flag(flag)),
            Some(Token::Word(word)) => return Err(ArgError::UnexpectedArgument(word)),
            Some(Token::Rest(rest)) => match rest.into_iter().next() {
                Some(word) => return Err(ArgError::UnexpectedArgument(word)),
                None => None,
            },
        })
    }

    /// The value of `flag` (just returned by [`Args::next_token`]), refused if the flag was given
    /// before.
    pub fn value(&mut self, flag: &str) -> Result<OsString, ArgError> {
        self.once(flag)?;
        self.parser
            .value()
            .map_err(|_| ArgError::MissingValue(flag.to_owned()))
    }

    /// [`Args::value`] as UTF-8 text.
    pub fn text(&mut self, flag: &str) -> Result<String, ArgError> {
        let value = self.value(flag)?;
        utf8(flag, value)
    }

    /// [`Args::value`] as a path: any bytes.
    pub fn path(&mut self, flag: &str) -> Result<PathBuf, ArgError> {
        self.value(flag).map(PathBuf::from)
    }

    /// A flag that may be given more than once, each time with a UTF-8 value.
    pub fn each_text(&mut self, flag: &str) -> Result<String, ArgError> {
        let value = self.each_value(flag)?;
        utf8(flag, value)
    }

    /// The value of `flag` without the once check, for a binary that collects the flags first
    /// and refuses a second one itself, after checks that must come first (kms: the flags
    /// refused inside Occlum are named as such, however often they are given).
    pub fn each_value(&mut self, flag: &str) -> Result<OsString, ArgError> {
        self.parser
            .value()
            .map_err(|_| ArgError::MissingValue(flag.to_owned()))
    }

    /// Accepts `flag` as a switch: no value, not given before.
    pub fn switch(&mut self, flag: &str) -> Result<(), ArgError> {
        if self.parser.optional_value().is_some() {
            return Err(ArgError::TakesNoValue(flag.to_owned()));
        }
        self.once(flag)
    }

    fn once(&mut self, flag: &str) -> Result<(), ArgError> {
        if self.seen.iter().any(|f| f == flag) {
            return Err(ArgError::GivenTwice(flag.to_owned()));
        }
        self.seen.push(flag.to_owned());
        Ok(())
    }

    /// `--help=x` or `--version=x`: the flag's name, if a value is attached.
    fn pending_value_flag(&mut self, token: &Token) -> Option<String> {
        self.parser.optional_value().map(|_| match token {
            Token::Help => "--help".to_owned(),
            _ => "--version".to_owned(),
        })
    }
}

/// A text value, refused by name if it is not UTF-8.
pub fn utf8(flag: &str, value: OsString) -> Result<String, ArgError> {
    value.into_string().map_err(|value| ArgError::NotUtf8 {
        flag: flag.to_owned(),
        value,
    })
}

fn from_lexopt(e: lexopt::Error) -> ArgError {
    match e {
        lexopt::Error::MissingValue { option } => {
            ArgError::MissingValue(option.unwrap_or_default())
        }
        lexopt::Error::UnexpectedOption(option) => ArgError::UnknownOption(option),
        lexopt::Error::UnexpectedValue { option, .. } => ArgError::TakesNoValue(option),
        lexopt::Error::UnexpectedArgument(arg) | lexopt::Error::NonUnicodeValue(arg) => {
            ArgError::UnexpectedArgument(arg)
        }
        lexopt::Error::ParsingFailed { value, .. } => ArgError::UnexpectedArgument(value.into()),
        lexopt::Error::Custom(e) => ArgError::UnexpectedArgument(e.to_string().into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt as _;

    fn args(words: &[&str]) -> Args {
        Args::new(words.iter().map(OsString::from))
    }

    fn flag(a: &mut Args) -> String {
        match a.next_token().unwrap() {
            Some(Token::Flag(f)) => f,
            other => panic!("not a flag: {other:?}"),
        }
    }

    #[test]
    fn inline_and_separate_values_are_the_same() {
        for words in [&["--out", "f"][..], &["--out=f"]] {
            let mut a = args(words);
            let f = flag(&mut a);
            assert_eq!(a.text(&f).unwrap(), "f");
            assert_eq!(a.next_token().unwrap(), None);
        }
        let mut a = args(&["--out="]);
        let f = flag(&mut a);
        assert_eq!(a.text(&f).unwrap(), "", "an empty inline value is a value");
    }

    #[test]
    fn a_value_may_look_like_a_flag() {
        let mut a = args(&["--seed", "-1", "--name", "--help"]);
        let f = flag(&mut a);
        assert_eq!(a.text(&f).unwrap(), "-1");
        let f = flag(&mut a);
        assert_eq!(a.text(&f).unwrap(), "--help");
    }

    #[test]
    fn a_single_valued_flag_given_twice_is_refused_by_name() {
        let mut a = args(&["--out", "a", "--out=b"]);
        let f = flag(&mut a);
        a.path(&f).unwrap();
        let f = flag(&mut a);
        assert_eq!(
            a.path(&f).unwrap_err(),
            ArgError::GivenTwice("--out".into())
        );
        assert_eq!(
            a.path("--out").unwrap_err().to_string(),
            "--out given twice"
        );
        let mut a = args(&["--json", "--json"]);
        let f = flag(&mut a);
        a.switch(&f).unwrap();
        let f = flag(&mut a);
        assert_eq!(
            a.switch(&f).unwrap_err(),
            ArgError::GivenTwice("--json".into())
        );
    }

    #[test]
    fn a_repeatable_flag_collects_every_value() {
        let mut a = args(&["--advisory", "A", "--advisory=B"]);
        let mut got = Vec::new();
        while let Some(Token::Flag(f)) = a.next_token().unwrap() {
            got.push(a.each_text(&f).unwrap());
        }
        assert_eq!(got, ["A", "B"]);
    }

    #[test]
    fn a_missing_value_and_a_value_on_a_switch_are_refused_by_name() {
        let mut a = args(&["--out"]);
        let f = flag(&mut a);
        assert_eq!(a.text(&f).unwrap_err().to_string(), "--out needs a value");
        let mut a = args(&["--json=yes"]);
        let f = flag(&mut a);
        assert_eq!(
            a.switch(&f).unwrap_err().to_string(),
            "--json takes no value"
        );
        assert_eq!(
            args(&["--help=1"]).next_token().unwrap_err(),
            ArgError::TakesNoValue("--help".into())
        );
    }

    #[test]
    fn help_version_short_flags_and_words() {
        let mut a = args(&["-h", "--help", "-V", "--version", "word", "-"]);
        for want in [Token::Help, Token::Help, Token::Version, Token::Version] {
            assert_eq!(a.next_token().unwrap(), Some(want));
        }
        assert_eq!(a.next_token().unwrap(), Some(Token::Word("word".into())));
        assert_eq!(a.next_token().unwrap(), Some(Token::Word("-".into())));
        assert_eq!(
            args(&["-x"]).next_token().unwrap_err().to_string(),
            "unknown option -x"
        );
    }

    #[test]
    fn everything_after_the_double_dash_is_verbatim() {
        let mut a = args(&["--x", "v", "--", "--help", "-h", "--"]);
        let f = flag(&mut a);
        a.text(&f).unwrap();
        assert_eq!(
            a.next_token().unwrap(),
            Some(Token::Rest(vec!["--help".into(), "-h".into(), "--".into()]))
        );
        assert_eq!(a.next_token().unwrap(), None);
        assert_eq!(
            args(&["--"]).next_token().unwrap(),
            Some(Token::Rest(Vec::new()))
        );
    }

    #[test]
    fn non_utf8_is_a_path_but_not_text() {
        let bytes = OsString::from_vec(b"d\xffir".to_vec());
        let mut a = Args::new([OsString::from("--dir"), bytes.clone()]);
        let f = flag(&mut a);
        assert_eq!(a.path(&f).unwrap(), PathBuf::from(bytes.clone()));
        let mut a = Args::new([OsString::from("--name"), bytes.clone()]);
        let f = flag(&mut a);
        let e = a.text(&f).unwrap_err();
        assert_eq!(
            e,
            ArgError::NotUtf8 {
                flag: "--name".into(),
                value: bytes.clone()
            }
        );
        assert!(
            e.to_string().starts_with("--name \"d\\xFFir\": not UTF-8"),
            "{e}"
        );
        let mut a = Args::new([bytes.clone()]);
        assert_eq!(a.next_token().unwrap(), Some(Token::Word(bytes)));
    }

    #[test]
    fn next_flag_refuses_positionals_and_skips_an_empty_rest() {
        let mut a = args(&["--json", "--", "x"]);
        assert_eq!(
            a.next_flag().unwrap(),
            Some(FlagToken::Flag("--json".into()))
        );
        assert_eq!(a.next_flag(), Err(ArgError::UnexpectedArgument("x".into())));
        let mut a = args(&["word"]);
        assert_eq!(
            a.next_flag(),
            Err(ArgError::UnexpectedArgument("word".into()))
        );
        let mut a = args(&["-h", "--"]);
        assert_eq!(a.next_flag().unwrap(), Some(FlagToken::Help));
        assert_eq!(a.next_flag().unwrap(), None);
        assert_eq!(args(&["-V"]).next_flag().unwrap(), Some(FlagToken::Version));
    }
}
