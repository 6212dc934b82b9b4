//! The `image_key` secret: 16 bytes as `occlum gen-image-key` writes them, `xx-xx-…-xx`.
//!
//! Parsed strictly (exactly 16 dash-separated groups of exactly two hex digits, then at most
//! trailing `\r`/`\n`, which Occlum's init also strips). The key lives in a zeroizing buffer,
//! has no `Debug` that shows it, and no error ever quotes the text.

use std::fmt;

use zeroize::Zeroizing;

/// Number of key bytes (an `sgx_key_128bit_t`).
pub const KEY_LEN: usize = 16;

/// The rootfs image key. Never printed.
pub struct ImageKey(Zeroizing<[u8; KEY_LEN]>);

impl ImageKey {
    /// Parses `text`, the decoded `image_key` secret.
    pub fn parse(text: &[u8]) -> Result<Self, KeyFormatError> {
        let text = trim_newlines(text);
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        let mut groups = text.split(|&b| b == b'-');
        for (index, slot) in key.iter_mut().enumerate() {
            let group = groups
                .next()
                .ok_or(KeyFormatError::GroupCount { found: index })?;
            *slot = parse_group(group).ok_or(KeyFormatError::BadGroup { index })?;
        }
        let extra = groups.count();
        if extra > 0 {
            return Err(KeyFormatError::GroupCount {
                found: KEY_LEN + extra,
            });
        }
        Ok(Self(key))
    }

    /// The raw key bytes.
    pub fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for ImageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ImageKey(<redacted>)")
    }
}

/// Why the `image_key` text is not a key. Carries positions only, never key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFormatError {
    /// Not 16 dash-separated groups.
    GroupCount { found: usize },
    /// Group `index` (0-based) is not exactly two hex digits.
    BadGroup { index: usize },
}

impl fmt::Display for KeyFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("image_key is not in `occlum gen-image-key` form (16 dash-separated hex byte pairs, xx-xx-...-xx): ")?;
        match self {
            Self::GroupCount { found } => write!(f, "found {found} groups"),
            Self::BadGroup { index } => write!(f, "group {} is not two hex digits", index + 1),
        }
    }
}

impl std::error::Error for KeyFormatError {}

fn trim_newlines(text: &[u8]) -> &[u8] {
    let end = text
        .iter()
        .rposition(|&b| b != b'\n' && b != b'\r')
        .map_or(0, |i| i + 1);
    text.get(..end).unwrap_or_default()
}

fn parse_group(group: &[u8]) -> Option<u8> {
    match group {
        [hi, lo] => Some(hex_digit(*hi)? << 4 | hex_digit(*lo)?),
        _ => None,
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "a5-6d-7f-cf-ae-93-e2-1f-5b-8a-83-3f-79-78-29-ff";

    #[test]
    fn the_occlum_form_parses_with_or_without_a_newline() {
        let want = [
            0xa5, 0x6d, 0x7f, 0xcf, 0xae, 0x93, 0xe2, 0x1f, 0x5b, 0x8a, 0x83, 0x3f, 0x79, 0x78,
            0x29, 0xff,
        ];
        for suffix in ["", "\n", "\r\n"] {
            let key = ImageKey::parse(format!("{TEXT}{suffix}").as_bytes()).unwrap();
            assert_eq!(key.bytes(), &want);
        }
        assert_eq!(
            ImageKey::parse(TEXT.to_uppercase().as_bytes())
                .unwrap()
                .bytes(),
            &want
        );
    }

    #[test]
    fn wrong_group_counts_are_refused() {
        assert_eq!(
            ImageKey::parse(b"").unwrap_err(),
            KeyFormatError::BadGroup { index: 0 }
        );
        assert_eq!(
            ImageKey::parse(&TEXT.as_bytes()[3..]).unwrap_err(),
            KeyFormatError::GroupCount { found: 15 }
        );
        let long = format!("{TEXT}-00");
        assert_eq!(
            ImageKey::parse(long.as_bytes()).unwrap_err(),
            KeyFormatError::GroupCount { found: 17 }
        );
    }

    #[test]
    fn malformed_groups_are_refused() {
        for bad in [
            "a-6d-7f-cf-ae-93-e2-1f-5b-8a-83-3f-79-78-29-ff",
            "a5-6d-7f-cf-ae-93-e2-1f-5b-8a-83-3f-79-78-29-fg",
            "a5-6d-7f-cf-ae-93-e2-1f-5b-8a-83-3f-79-78-29-f ",
            " a5-6d-7f-cf-ae-93-e2-1f-5b-8a-83-3f-79-78-29-ff",
            "a5-6d-7f-cf-ae-93-e2-1f-5b-8a-83-3f-79-78-29-ff\n\n x",
            "+5-6d-7f-cf-ae-93-e2-1f-5b-8a-83-3f-79-78-29-ff",
        ] {
            assert!(
                matches!(
                    ImageKey::parse(bad.as_bytes()),
                    Err(KeyFormatError::BadGroup { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn errors_and_debug_never_show_the_key() {
        let bad = "a5-6d-7f-cf-ae-93-e2-1f-5b-8a-83-3f-79-78-29-zz";
        let err = ImageKey::parse(bad.as_bytes()).unwrap_err().to_string();
        assert!(!err.contains("a5") && !err.contains("zz"), "{err}");
        let key = ImageKey::parse(TEXT.as_bytes()).unwrap();
        assert!(!format!("{key:?}").contains("a5"));
    }
}
