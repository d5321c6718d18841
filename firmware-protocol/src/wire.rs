//! Little-endian cursors over borrowed frames and caller-provided buffers.
//!
//! Decoders check a frame's length against its layout before reading fields, so the reader's
//! own bounds check is a second line of defence: it turns any slip into `TooShort`, never a
//! panic.

use crate::Error;

/// Reads little-endian integers from a frame, front to back.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let end = self.pos + N;
        let bytes = self
            .buf
            .get(self.pos..end)
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or(Error::TooShort {
                expected: end,
                found: self.buf.len(),
            })?;
        self.pos = end;
        Ok(bytes)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_le_bytes(self.take()?))
    }

    pub(crate) fn i16(&mut self) -> Result<i16, Error> {
        Ok(i16::from_le_bytes(self.take()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.take()?))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, Error> {
        Ok(i32::from_le_bytes(self.take()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.take()?))
    }
}

/// Checks a frame's total length against the length its layout requires.
pub(crate) fn expect_len(frame: &[u8], expected: usize) -> Result<(), Error> {
    let found = frame.len();
    if found < expected {
        Err(Error::TooShort { expected, found })
    } else if found > expected {
        Err(Error::TrailingBytes { expected, found })
    } else {
        Ok(())
    }
}

/// Writes little-endian integers into a buffer whose size was checked up front.
pub(crate) struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// Claims `len` bytes of `buf`, or reports how many are missing.
    pub(crate) fn new(buf: &'a mut [u8], len: usize) -> Result<Self, Error> {
        if buf.len() < len {
            return Err(Error::BufferTooSmall {
                needed: len,
                available: buf.len(),
            });
        }
        Ok(Writer { buf, pos: 0 })
    }

    pub(crate) fn finish(self) -> usize {
        self.pos
    }

    fn put(&mut self, bytes: &[u8]) {
        // The length was checked in `new` against the message's own `encoded_len`, which
        // every encoder computes from the same fields it writes.
        self.buf[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.put(&v.to_le_bytes());
    }

    pub(crate) fn i16(&mut self, v: i16) {
        self.put(&v.to_le_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.put(&v.to_le_bytes());
    }

    pub(crate) fn i32(&mut self, v: i32) {
        self.put(&v.to_le_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.put(&v.to_le_bytes());
    }
}

/// The version byte every meterhub message starts with; reports unknown versions.
pub(crate) fn check_version(frame: &[u8]) -> Result<(), Error> {
    match frame.first() {
        None => Err(Error::Empty),
        Some(&crate::FORMAT_VERSION) => Ok(()),
        Some(&v) => Err(Error::UnsupportedVersion(v)),
    }
}
