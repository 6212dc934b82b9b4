//! A bounded cursor over untrusted bytes.
//!
//! Every read is by length and fails with [`Truncated`] instead of panicking; callers finish
//! with [`Reader::expect_end`] so trailing data is an error, not silently ignored.

/// A read ran past the end of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated {
    /// Which field was being read.
    pub field: &'static str,
    /// Bytes the field needed.
    pub needed: usize,
    /// Bytes that were left.
    pub left: usize,
}

/// A forward-only cursor over a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading `buf` at offset 0.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, offset: 0 }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Bytes not yet consumed.
    pub fn left(&self) -> usize {
        self.buf.len() - self.offset
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], Truncated> {
        let rest = self.buf.get(self.offset..).unwrap_or_default();
        match rest.get(..n) {
            Some(bytes) => {
                self.offset += n;
                Ok(bytes)
            }
            None => Err(Truncated {
                field,
                needed: n,
                left: rest.len(),
            }),
        }
    }

    /// Takes the next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], Truncated> {
        let bytes = self.take(field, N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// Reads a little-endian `u16`.
    pub fn u16_le(&mut self, field: &'static str) -> Result<u16, Truncated> {
        self.array::<2>(field).map(u16::from_le_bytes)
    }

    /// Reads a little-endian `u32`.
    pub fn u32_le(&mut self, field: &'static str) -> Result<u32, Truncated> {
        self.array::<4>(field).map(u32::from_le_bytes)
    }

    /// Reads a little-endian `u64`.
    pub fn u64_le(&mut self, field: &'static str) -> Result<u64, Truncated> {
        self.array::<8>(field).map(u64::from_le_bytes)
    }

    /// Takes everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = self.buf.get(self.offset..).unwrap_or_default();
        self.offset = self.buf.len();
        rest
    }

    /// Succeeds only when every byte has been consumed.
    pub fn expect_end(&self) -> Result<(), usize> {
        match self.left() {
            0 => Ok(()),
            n => Err(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_in_order_and_reports_the_end() {
        let mut r = Reader::new(&[1, 0, 2, 0, 0, 0, 9]);
        assert_eq!(r.u16_le("a"), Ok(1));
        assert_eq!(r.u32_le("b"), Ok(2));
        assert_eq!(r.expect_end(), Err(1));
        assert_eq!(r.take("c", 1), Ok(&[9u8][..]));
        assert_eq!(r.expect_end(), Ok(()));
    }

    #[test]
    fn a_short_read_names_the_field_and_consumes_nothing() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(
            r.u32_le("size"),
            Err(Truncated {
                field: "size",
                needed: 4,
                left: 3
            })
        );
        assert_eq!(r.offset(), 0);
    }
}
