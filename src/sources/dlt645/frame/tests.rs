use super::*;

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// Request frames as two independent implementations encode them (fdxxw/rs-dlt645's
/// `from_cmd` test, peace0phmind/dlt645's `TestFrame_NewReadFrame`), not by ecogate.
#[test]
fn read_requests_match_independent_encoders() {
    let a = Address::parse("202208310002").unwrap();
    assert_eq!(a.0, [0x02, 0x00, 0x31, 0x08, 0x22, 0x20]);
    let mut f = PREAMBLE.to_vec();
    f.extend(read_request(a, Edition::Y2007, &[0x02, 0x80, 0x22, 0xFF]));
    assert_eq!(
        f,
        hex("fe fe fe fe 68 02 00 31 08 22 20 68 11 04 32 55 b3 35 d1 16")
    );
    let a = Address::parse("1234567890").unwrap();
    assert_eq!(
        read_request(a, Edition::Y2007, &[0, 0, 0, 0]),
        hex("68 90 78 56 34 12 00 68 11 04 33 33 33 33 55 16")
    );
    let a = Address::parse("12345678").unwrap();
    assert_eq!(
        read_request(a, Edition::Y2007, &[0x02, 0x01, 0x01, 0x00]),
        hex("68 78 56 34 12 00 00 68 11 04 33 34 34 35 c9 16")
    );
    assert_eq!(a.to_string(), "000012345678");
}

/// A reply written by hand from the standard's rules: meter 202208310002 answers DI 00 01 00
/// 00 (forward active total) with 123456.78 kWh after two FE.
/// DATA plain: DI 00 00 01 00 (reversed), value BCD 78 56 34 12; +33: 33 33 34 33 AB 89 67 45.
/// CS = 68 + (02+00+31+08+22+20 = 7D) + 68 + 91 + 08 + (33+33+34+33 = CD) + (AB+89+67+45 =
/// 1E0) = 104 + 125 + 104 + 145 + 8 + 205 + 480 = 1171; 1171 mod 256 = 147 = 0x93.
#[test]
fn a_reply_after_a_preamble_decodes() {
    let bytes = hex("fe fe 68 02 00 31 08 22 20 68 91 08 33 33 34 33 ab 89 67 45 93 16");
    let Decoded::Frame(f, used) = decode(&bytes) else {
        panic!("{:?}", decode(&bytes));
    };
    assert_eq!(used, bytes.len());
    assert_eq!(f.address, Address::parse("202208310002").unwrap());
    assert!(f.is_reply() && !f.is_error() && !f.has_more());
    assert_eq!(f.function(), 0x11);
    assert_eq!(f.data, vec![0x00, 0x00, 0x01, 0x00, 0x78, 0x56, 0x34, 0x12]);
}

/// An error reply: C = D1, one error byte 02 ("no requested data") sent as 35.
/// CS = 104 + 125 + 104 + 209 + 1 + 53 = 596; 596 mod 256 = 84 = 0x54.
#[test]
fn an_error_reply_names_its_bits() {
    let bytes = hex("68 02 00 31 08 22 20 68 d1 01 35 54 16");
    let Decoded::Frame(f, _) = decode(&bytes) else {
        panic!()
    };
    assert!(f.is_reply() && f.is_error());
    assert_eq!(error_names(f.data[0]), vec!["no requested data"]);
    assert_eq!(
        error_names(0x05),
        vec!["other error", "password error or unauthorised"]
    );
}

#[test]
fn noise_a_bad_checksum_and_a_short_buffer() {
    let good = hex("68 02 00 31 08 22 20 68 d1 01 35 54 16");
    // Every prefix is incomplete, never an error.
    for n in 0..good.len() {
        let d = decode(&good[..n]);
        assert!(
            matches!(d, Decoded::Incomplete) || n == 0,
            "prefix of {n}: {d:?}"
        );
    }
    let mut bad = good.clone();
    bad[11] = 0x55;
    assert_eq!(
        decode(&bad),
        Decoded::Bad(
            FrameError::Checksum {
                found: 0x55,
                computed: 0x54
            },
            1
        )
    );
    // Noise before the frame (including a stray 68) is skipped step by step.
    let mut noisy = hex("00 68 11 fe");
    noisy.extend(&good);
    let mut at = 0;
    let frame = loop {
        match decode(&noisy[at..]) {
            Decoded::Frame(f, used) => {
                assert_eq!(at + used, noisy.len());
                break f;
            }
            Decoded::Bad(_, skip) => at += skip,
            Decoded::Incomplete => panic!("stuck at {at}"),
        }
    };
    assert!(frame.is_error());
}

#[test]
fn addresses_are_checked() {
    assert!(Address::parse("12345X").is_err());
    assert!(Address::parse("1234567890123").is_err());
    assert!(Address::parse("").is_err());
    assert_eq!(Address::parse("aaaaaaaaaaaa").unwrap(), Address::WILDCARD);
    assert_eq!(Address::WILDCARD.to_string(), "AAAAAAAAAAAA");
}
