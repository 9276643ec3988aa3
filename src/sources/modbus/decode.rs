//! Register decoding: data types, word and byte orders, BCD. Pure functions.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
    /// Four decimal digits in one register, as some meters keep energy.
    Bcd16,
    /// Eight decimal digits in two registers.
    Bcd32,
    /// A coil or discrete input: 0 or 1.
    Bool,
}

impl DataType {
    pub const NAMES: &'static [(&'static str, DataType)] = &[
        ("u16", DataType::U16),
        ("i16", DataType::I16),
        ("u32", DataType::U32),
        ("i32", DataType::I32),
        ("u64", DataType::U64),
        ("i64", DataType::I64),
        ("f32", DataType::F32),
        ("f64", DataType::F64),
        ("bcd16", DataType::Bcd16),
        ("bcd32", DataType::Bcd32),
        ("bool", DataType::Bool),
    ];

    pub fn parse(text: &str) -> Option<DataType> {
        let lower = text.to_ascii_lowercase();
        DataType::NAMES
            .iter()
            .find(|(n, _)| *n == lower)
            .map(|(_, t)| *t)
    }

    /// Registers (or bits, for `Bool`) the type occupies.
    pub fn width(self) -> u16 {
        match self {
            DataType::U16 | DataType::I16 | DataType::Bcd16 | DataType::Bool => 1,
            DataType::U32 | DataType::I32 | DataType::F32 | DataType::Bcd32 => 2,
            DataType::U64 | DataType::I64 | DataType::F64 => 4,
        }
    }
}

/// Order of the bytes of a multi-register value as the device sends them, named by where the
/// bytes of the big-endian value `A B C D` end up: ABCD is big-endian (high word first), CDAB
/// swaps words, BADC swaps bytes within words, DCBA is little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WordOrder {
    #[default]
    Abcd,
    Cdab,
    Badc,
    Dcba,
}

impl WordOrder {
    pub fn parse(text: &str) -> Option<WordOrder> {
        match text.to_ascii_uppercase().as_str() {
            "ABCD" => Some(WordOrder::Abcd),
            "CDAB" => Some(WordOrder::Cdab),
            "BADC" => Some(WordOrder::Badc),
            "DCBA" => Some(WordOrder::Dcba),
            _ => None,
        }
    }

    fn swaps_bytes(self) -> bool {
        matches!(self, WordOrder::Badc | WordOrder::Dcba)
    }

    fn swaps_words(self) -> bool {
        matches!(self, WordOrder::Cdab | WordOrder::Dcba)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The response held fewer registers than the value needs.
    Short { needed: usize, got: usize },
    /// A BCD register with a nibble above 9.
    BadBcd(u32),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Short { needed, got } => {
                write!(f, "needs {needed} registers, response had {got}")
            }
            DecodeError::BadBcd(raw) => write!(f, "0x{raw:X} is not BCD"),
        }
    }
}

/// Puts registers into big-endian order, undoing the device's word and byte order.
fn normalise(words: &[u16], order: WordOrder) -> u64 {
    let mut bits: u64 = 0;
    let n = words.len();
    for i in 0..n {
        let w = if order.swaps_words() {
            words[n - 1 - i]
        } else {
            words[i]
        };
        let w = if order.swaps_bytes() {
            w.swap_bytes()
        } else {
            w
        };
        bits = (bits << 16) | w as u64;
    }
    bits
}

fn bcd(raw: u32, digits: u32) -> Result<f64, DecodeError> {
    let mut value: u64 = 0;
    for i in (0..digits).rev() {
        let nibble = (raw >> (i * 4)) & 0xF;
        if nibble > 9 {
            return Err(DecodeError::BadBcd(raw));
        }
        value = value * 10 + nibble as u64;
    }
    Ok(value as f64)
}

/// Decodes a value from its registers (for `Bool`, one register holding 0 or 1).
pub fn decode(words: &[u16], ty: DataType, order: WordOrder) -> Result<f64, DecodeError> {
    let needed = ty.width() as usize;
    if words.len() < needed {
        return Err(DecodeError::Short {
            needed,
            got: words.len(),
        });
    }
    let words = &words[..needed];
    let bits = normalise(words, order);
    Ok(match ty {
        DataType::U16 => bits as u16 as f64,
        DataType::I16 => bits as u16 as i16 as f64,
        DataType::U32 => bits as u32 as f64,
        DataType::I32 => bits as u32 as i32 as f64,
        DataType::U64 => bits as f64,
        DataType::I64 => bits as i64 as f64,
        DataType::F32 => f32::from_bits(bits as u32) as f64,
        DataType::F64 => f64::from_bits(bits),
        DataType::Bcd16 => bcd(bits as u32, 4)?,
        DataType::Bcd32 => bcd(bits as u32, 8)?,
        DataType::Bool => (bits != 0) as u8 as f64,
    })
}

/// Encodes a value into registers in the given order: the inverse of `decode`, used by tests
/// and simulators.
pub fn encode(value: f64, ty: DataType, order: WordOrder) -> Vec<u16> {
    let bits: u64 = match ty {
        DataType::U16 => value as u16 as u64,
        DataType::I16 => value as i16 as u16 as u64,
        DataType::U32 => value as u32 as u64,
        DataType::I32 => value as i32 as u32 as u64,
        DataType::U64 => value as u64,
        DataType::I64 => value as i64 as u64,
        DataType::F32 => (value as f32).to_bits() as u64,
        DataType::F64 => value.to_bits(),
        DataType::Bcd16 | DataType::Bcd32 => {
            let mut v = value as u64;
            let mut out = 0u64;
            for i in 0..(ty.width() as u32 * 4) {
                out |= (v % 10) << (i * 4);
                v /= 10;
            }
            out
        }
        DataType::Bool => (value != 0.0) as u64,
    };
    let n = ty.width() as usize;
    let mut words: Vec<u16> = (0..n)
        .map(|i| (bits >> (16 * (n - 1 - i))) as u16)
        .collect();
    if order.swaps_bytes() {
        for w in &mut words {
            *w = w.swap_bytes();
        }
    }
    if order.swaps_words() {
        words.reverse();
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_in_every_order() {
        // 1234.5f32 = 0x449A5000: A=44 B=9A C=50 D=00.
        assert_eq!(
            decode(&[0x449A, 0x5000], DataType::F32, WordOrder::Abcd),
            Ok(1234.5)
        );
        assert_eq!(
            decode(&[0x5000, 0x449A], DataType::F32, WordOrder::Cdab),
            Ok(1234.5)
        );
        assert_eq!(
            decode(&[0x9A44, 0x0050], DataType::F32, WordOrder::Badc),
            Ok(1234.5)
        );
        assert_eq!(
            decode(&[0x0050, 0x9A44], DataType::F32, WordOrder::Dcba),
            Ok(1234.5)
        );
    }

    #[test]
    fn integers_signs_and_bcd() {
        assert_eq!(decode(&[0xFFFF], DataType::I16, WordOrder::Abcd), Ok(-1.0));
        assert_eq!(
            decode(&[0xFFFF], DataType::U16, WordOrder::Abcd),
            Ok(65535.0)
        );
        assert_eq!(
            decode(&[0x0001, 0x0000], DataType::U32, WordOrder::Abcd),
            Ok(65536.0)
        );
        assert_eq!(
            decode(&[0x0000, 0x0001], DataType::U32, WordOrder::Cdab),
            Ok(65536.0)
        );
        assert_eq!(
            decode(&[0x1234], DataType::Bcd16, WordOrder::Abcd),
            Ok(1234.0)
        );
        assert_eq!(
            decode(&[0x1234, 0x5678], DataType::Bcd32, WordOrder::Abcd),
            Ok(12345678.0)
        );
        assert_eq!(
            decode(&[0x12A4], DataType::Bcd16, WordOrder::Abcd),
            Err(DecodeError::BadBcd(0x12A4))
        );
        assert_eq!(
            decode(&[0x0001], DataType::U32, WordOrder::Abcd),
            Err(DecodeError::Short { needed: 2, got: 1 })
        );
    }

    #[test]
    fn encode_is_the_inverse_of_decode() {
        let orders = [
            WordOrder::Abcd,
            WordOrder::Cdab,
            WordOrder::Badc,
            WordOrder::Dcba,
        ];
        let cases = [
            (DataType::U16, 54321.0),
            (DataType::I16, -1234.0),
            (DataType::U32, 3_000_000_000.0),
            (DataType::I32, -2_000_000_000.0),
            (DataType::U64, 9_007_199_254_740_000.0),
            (DataType::I64, -9_007_199_254_740_000.0),
            (DataType::F32, -0.15625),
            (DataType::F64, 12345678.901234),
            (DataType::Bcd16, 9876.0),
            (DataType::Bcd32, 87654321.0),
        ];
        for (ty, v) in cases {
            for order in orders {
                assert_eq!(
                    decode(&encode(v, ty, order), ty, order),
                    Ok(v),
                    "{ty:?} {order:?}"
                );
            }
        }
    }
}
