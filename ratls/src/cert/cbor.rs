//! A bounded reader for the small subset of CBOR (RFC 8949) that TCG DICE RA-TLS evidence uses.
//!
//! Only definite-length items are accepted (the CCC "Interoperable RA-TLS" evidence format
//! requires definite-length encoding); every length is checked against the bytes that are
//! actually left before anything is read, so hostile lengths fail as truncation, never as a
//! large allocation or a panic. There is no recursion: callers read the fixed shape they expect.

use crate::reader::Reader;

/// CBOR major types (RFC 8949 section 3.1).
pub(super) const MAJOR_UINT: u8 = 0;
pub(super) const MAJOR_BYTES: u8 = 2;
pub(super) const MAJOR_TEXT: u8 = 3;
pub(super) const MAJOR_ARRAY: u8 = 4;
pub(super) const MAJOR_MAP: u8 = 5;
pub(super) const MAJOR_TAG: u8 = 6;

/// Why CBOR bytes do not have the shape the caller expects.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CborError {
    /// Input ended inside an item.
    Truncated { at: usize },
    /// An item of another major type than expected.
    UnexpectedType {
        at: usize,
        expected: &'static str,
        found: u8,
    },
    /// Indefinite length (additional information 31) or a reserved value (28..=30).
    Indefinite { at: usize },
    /// A length that does not fit this machine's `usize`.
    LengthOverflow { at: usize },
    /// Bytes left after the item.
    Trailing { extra: usize },
    /// A text string that is not UTF-8.
    NotUtf8 { at: usize },
}

impl std::fmt::Display for CborError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated { at } => write!(f, "cbor truncated at offset {at}"),
            Self::UnexpectedType {
                at,
                expected,
                found,
            } => write!(
                f,
                "cbor item at offset {at}: expected {expected}, found major type {found}"
            ),
            Self::Indefinite { at } => {
                write!(
                    f,
                    "cbor item at offset {at}: indefinite or reserved length encoding"
                )
            }
            Self::LengthOverflow { at } => write!(f, "cbor item at offset {at}: length overflows"),
            Self::Trailing { extra } => write!(f, "cbor has {extra} trailing bytes"),
            Self::NotUtf8 { at } => write!(f, "cbor text string at offset {at} is not utf-8"),
        }
    }
}

impl std::error::Error for CborError {}

/// A forward-only CBOR cursor.
pub(super) struct Cbor<'a> {
    r: Reader<'a>,
}

impl<'a> Cbor<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self {
            r: Reader::new(bytes),
        }
    }

    /// Reads an item head of `major` type and returns its argument (value, length or tag).
    pub(super) fn head(&mut self, major: u8, expected: &'static str) -> Result<u64, CborError> {
        let at = self.r.offset();
        let [initial] = self
            .r
            .array::<1>("cbor head")
            .map_err(|_| CborError::Truncated { at })?;
        let found = initial >> 5;
        if found != major {
            return Err(CborError::UnexpectedType {
                at,
                expected,
                found,
            });
        }
        let info = initial & 0x1f;
        let width = match info {
            0..=23 => return Ok(u64::from(info)),
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            _ => return Err(CborError::Indefinite { at }),
        };
        let bytes = self
            .r
            .take("cbor argument", width)
            .map_err(|_| CborError::Truncated { at })?;
        Ok(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// Reads an unsigned integer.
    pub(super) fn uint(&mut self) -> Result<u64, CborError> {
        self.head(MAJOR_UINT, "an unsigned integer")
    }

    /// Reads a tag number; the tagged item follows.
    pub(super) fn tag(&mut self) -> Result<u64, CborError> {
        self.head(MAJOR_TAG, "a tag")
    }

    /// Reads a definite-length array header and returns the element count.
    pub(super) fn array(&mut self) -> Result<u64, CborError> {
        self.head(MAJOR_ARRAY, "an array")
    }

    /// Reads a definite-length map header and returns the number of pairs.
    pub(super) fn map(&mut self) -> Result<u64, CborError> {
        self.head(MAJOR_MAP, "a map")
    }

    /// Reads a definite-length byte string.
    pub(super) fn bytes(&mut self) -> Result<&'a [u8], CborError> {
        self.string(MAJOR_BYTES, "a byte string")
    }

    /// Reads a definite-length UTF-8 text string.
    pub(super) fn text(&mut self) -> Result<&'a str, CborError> {
        let at = self.r.offset();
        let raw = self.string(MAJOR_TEXT, "a text string")?;
        std::str::from_utf8(raw).map_err(|_| CborError::NotUtf8 { at })
    }

    /// Succeeds only when every byte has been consumed.
    pub(super) fn end(&self) -> Result<(), CborError> {
        self.r
            .expect_end()
            .map_err(|extra| CborError::Trailing { extra })
    }

    fn string(&mut self, major: u8, expected: &'static str) -> Result<&'a [u8], CborError> {
        let at = self.r.offset();
        let len = self.head(major, expected)?;
        let len = usize::try_from(len).map_err(|_| CborError::LengthOverflow { at })?;
        self.r
            .take("cbor string", len)
            .map_err(|_| CborError::Truncated { at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_of_every_width_decode_big_endian() {
        assert_eq!(Cbor::new(&[0x17]).uint(), Ok(23));
        assert_eq!(Cbor::new(&[0x18, 0xff]).uint(), Ok(255));
        assert_eq!(Cbor::new(&[0xd9, 0xea, 0x60]).tag(), Ok(60000));
        assert_eq!(Cbor::new(&[0x1a, 0, 1, 0, 0]).uint(), Ok(65536));
        assert_eq!(
            Cbor::new(&[0x1b, 0, 0, 0, 1, 0, 0, 0, 0]).uint(),
            Ok(1 << 32)
        );
    }

    #[test]
    fn indefinite_lengths_are_refused() {
        assert_eq!(
            Cbor::new(&[0x5f, 0x41, 0x00, 0xff]).bytes(),
            Err(CborError::Indefinite { at: 0 })
        );
        assert_eq!(
            Cbor::new(&[0x9f, 0xff]).array(),
            Err(CborError::Indefinite { at: 0 })
        );
        assert_eq!(
            Cbor::new(&[0x1c]).uint(),
            Err(CborError::Indefinite { at: 0 })
        );
    }

    #[test]
    fn a_huge_declared_length_is_truncation_not_an_allocation() {
        let huge = [0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00];
        assert!(matches!(
            Cbor::new(&huge).bytes(),
            Err(CborError::Truncated { .. } | CborError::LengthOverflow { .. })
        ));
    }

    #[test]
    fn the_wrong_major_type_is_named() {
        assert_eq!(
            Cbor::new(&[0x61, b'a']).bytes(),
            Err(CborError::UnexpectedType {
                at: 0,
                expected: "a byte string",
                found: MAJOR_TEXT
            })
        );
    }

    #[test]
    fn text_must_be_utf8_and_trailing_bytes_are_reported() {
        assert_eq!(
            Cbor::new(&[0x61, 0xff]).text(),
            Err(CborError::NotUtf8 { at: 0 })
        );
        let mut c = Cbor::new(&[0x41, 7, 0]);
        assert_eq!(c.bytes(), Ok(&[7u8][..]));
        assert_eq!(c.end(), Err(CborError::Trailing { extra: 1 }));
    }

    #[test]
    fn every_prefix_of_a_nested_item_fails_cleanly() {
        // 60000([h'0102', h'a0'])
        let full = [0xd9, 0xea, 0x60, 0x82, 0x42, 1, 2, 0x41, 0xa0];
        let read = |b: &[u8]| -> Result<(), CborError> {
            let mut c = Cbor::new(b);
            c.tag()?;
            c.array()?;
            c.bytes()?;
            c.bytes()?;
            c.end()
        };
        assert_eq!(read(&full), Ok(()));
        for len in 0..full.len() {
            assert!(read(&full[..len]).is_err(), "prefix of {len} bytes read");
        }
    }
}
