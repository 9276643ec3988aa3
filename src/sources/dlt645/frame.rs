//! DL/T 645 frames, I/O-free: `[FE x 0..n] 68 A0..A5 68 C L DATA CS 16`.
//!
//! - The address is 6 bytes of 2 BCD digits each, low byte first on the wire (meter
//!   202208310002 is `02 00 31 08 22 20`); `AA` bytes are wildcards (read-address, C = 13).
//! - DATA is sent with 0x33 added to every byte; identifiers and values inside it are little
//!   endian before that.
//! - CS is the sum modulo 256 of every byte from the first 68 to the last DATA byte (the FE
//!   wake-up preamble is not counted).
//! - C: bit 7 set in a reply, bit 6 an error reply (DATA is one error byte), bit 5 "more frames
//!   follow"; bits 4..0 the function (2007: 11 read, 12 read subsequent, 13 read address; 1997:
//!   01 read).
//!
//! Sources: DL/T 645-2007 (multi-function watt-hour meter communication protocol), sections 7
//! (frame) and Annex A (identifiers); DL/T 645-1997 for the 2-byte identifiers.

/// Longest DATA a reply may carry (DL/T 645-2007 7.1: L <= 200 for a read).
pub const MAX_DATA: usize = 200;

/// Wake-up bytes sent before a request: most meters need none, some older ones four.
pub const PREAMBLE: [u8; 4] = [0xFE; 4];

/// The protocol edition: it fixes the read function code and the identifier length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Edition {
    /// DL/T 645-2007: read = 11, 4-byte identifiers.
    Y2007,
    /// DL/T 645-1997: read = 01, 2-byte identifiers.
    Y1997,
}

impl Edition {
    pub fn read_code(self) -> u8 {
        match self {
            Edition::Y2007 => 0x11,
            Edition::Y1997 => 0x01,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Edition::Y2007 => "2007",
            Edition::Y1997 => "1997",
        }
    }
}

/// Read-subsequent-data (2007): asks for the next frame of a reply that had bit 5 set.
pub const READ_NEXT: u8 = 0x12;
/// Read the communication address (2007), sent to the wildcard address.
pub const READ_ADDRESS: u8 = 0x13;

/// A meter's 6-byte address as it travels (low byte first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Address(pub [u8; 6]);

impl Address {
    /// The wildcard every meter on a line answers to (used to read an unknown address).
    pub const WILDCARD: Address = Address([0xAA; 6]);

    /// From its 12 printed digits (most significant first, as on the nameplate); shorter
    /// numbers are padded with leading zeros.
    pub fn parse(text: &str) -> Result<Address, FrameError> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("AAAAAAAAAAAA") {
            return Ok(Address::WILDCARD);
        }
        if t.is_empty() || t.len() > 12 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FrameError::BadAddress(t.chars().take(24).collect()));
        }
        let digits = format!("{t:0>12}");
        let d = digits.as_bytes();
        let mut out = [0u8; 6];
        for (i, slot) in out.iter_mut().enumerate() {
            // Byte 0 on the wire holds the last two printed digits.
            let hi = d[10 - 2 * i] - b'0';
            let lo = d[11 - 2 * i] - b'0';
            *slot = (hi << 4) | lo;
        }
        Ok(Address(out))
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0.iter().rev() {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("`{0}` is not a meter address (up to 12 digits)")]
    BadAddress(String),
    #[error("no frame start (68) in {0} byte(s)")]
    NoStart(usize),
    #[error("the second 68 is missing (found {0:02X})")]
    NoSecondStart(u8),
    #[error("DATA of {0} bytes is longer than 200")]
    TooLong(usize),
    #[error("checksum {found:02X}, computed {computed:02X}")]
    Checksum { found: u8, computed: u8 },
    #[error("the end byte is {0:02X}, not 16")]
    NoEnd(u8),
}

/// One decoded frame: DATA already has 0x33 taken off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub address: Address,
    pub control: u8,
    pub data: Vec<u8>,
}

impl Frame {
    pub fn is_reply(&self) -> bool {
        self.control & 0x80 != 0
    }

    pub fn is_error(&self) -> bool {
        self.control & 0x40 != 0
    }

    pub fn has_more(&self) -> bool {
        self.control & 0x20 != 0
    }

    pub fn function(&self) -> u8 {
        self.control & 0x1F
    }
}

/// Encodes a frame (without preamble): DATA is given plain and scrambled here.
pub fn encode(address: Address, control: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + data.len());
    out.push(0x68);
    out.extend_from_slice(&address.0);
    out.push(0x68);
    out.push(control);
    out.push(data.len().min(255) as u8);
    out.extend(data.iter().map(|b| b.wrapping_add(0x33)));
    let cs = out.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    out.push(cs);
    out.push(0x16);
    out
}

/// A read request for `di` (its identifier bytes as written, most significant first).
pub fn read_request(address: Address, edition: Edition, di: &[u8]) -> Vec<u8> {
    let mut data: Vec<u8> = di.to_vec();
    data.reverse();
    encode(address, edition.read_code(), &data)
}

/// What [`decode`] found at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// More bytes are needed.
    Incomplete,
    /// A frame, and how many bytes of the buffer it used (preamble and noise before it
    /// included).
    Frame(Frame, usize),
    /// The bytes up to `skip` are not a frame; drop them and look again.
    Bad(FrameError, usize),
}

/// Finds the first frame in `buf`, skipping any FE preamble and line noise before it.
pub fn decode(buf: &[u8]) -> Decoded {
    let Some(start) = buf.iter().position(|b| *b == 0x68) else {
        // Nothing here starts a frame: keep nothing (noise, preamble).
        return if buf.is_empty() {
            Decoded::Incomplete
        } else {
            Decoded::Bad(FrameError::NoStart(buf.len()), buf.len())
        };
    };
    let f = &buf[start..];
    if f.len() < 10 {
        return Decoded::Incomplete;
    }
    if f[7] != 0x68 {
        // This 68 was noise: look again after it.
        return Decoded::Bad(FrameError::NoSecondStart(f[7]), start + 1);
    }
    let len = f[9] as usize;
    if len > MAX_DATA {
        return Decoded::Bad(FrameError::TooLong(len), start + 1);
    }
    let total = 12 + len;
    if f.len() < total {
        return Decoded::Incomplete;
    }
    let computed = f[..10 + len].iter().fold(0u8, |a, b| a.wrapping_add(*b));
    if f[10 + len] != computed {
        return Decoded::Bad(
            FrameError::Checksum {
                found: f[10 + len],
                computed,
            },
            start + 1,
        );
    }
    if f[11 + len] != 0x16 {
        return Decoded::Bad(FrameError::NoEnd(f[11 + len]), start + 1);
    }
    let mut address = [0u8; 6];
    address.copy_from_slice(&f[1..7]);
    Decoded::Frame(
        Frame {
            address: Address(address),
            control: f[8],
            data: f[10..10 + len]
                .iter()
                .map(|b| b.wrapping_sub(0x33))
                .collect(),
        },
        start + total,
    )
}

/// The error byte of an error reply (C bit 6), by bit (DL/T 645-2007 7.3.3).
pub fn error_names(byte: u8) -> Vec<&'static str> {
    const BITS: [(u8, &str); 7] = [
        (0x01, "other error"),
        (0x02, "no requested data"),
        (0x04, "password error or unauthorised"),
        (0x08, "baud rate cannot be changed"),
        (0x10, "too many year time zones"),
        (0x20, "too many day periods"),
        (0x40, "too many tariffs"),
    ];
    let names: Vec<&str> = BITS
        .iter()
        .filter(|(b, _)| byte & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if names.is_empty() {
        vec!["error (no bit set)"]
    } else {
        names
    }
}

#[cfg(test)]
mod tests;
