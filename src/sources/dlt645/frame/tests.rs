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

/// Replies logged on the wire from real meters, as published in the comments of two public
/// embedded drivers (an RS-485 reader at 9600 8E1 for a single-phase meter, and a transparent
/// gateway's parser), not made by ecogate or from its reading of the standard. Each must decode
/// with its checksum, its address and the value the driver's authors read from it.
#[test]
fn replies_captured_from_real_meters_decode() {
    use crate::sources::dlt645::data::{decode_value, quantity};
    let decoded = |text: &str| {
        let bytes = hex(text);
        match decode(&bytes) {
            Decoded::Frame(f, used) => {
                assert_eq!(used, bytes.len(), "{text}");
                f
            }
            other => panic!("{text}: {other:?}"),
        }
    };
    let forward = quantity("forward_active_total").unwrap();
    let energy = |f: &Frame| {
        decode_value(&forward.di, forward.format, false, &f.data)
            .unwrap()
            .amount
    };
    // The read-address reply (C = 93) of meter 181226034194, which names itself in its DATA.
    let f = decoded("fe fe fe fe 68 94 41 03 26 12 18 68 93 06 c7 74 36 59 45 4b eb 16");
    assert_eq!(f.address, Address::parse("181226034194").unwrap());
    assert!(f.is_reply() && f.function() == READ_ADDRESS);
    assert_eq!(f.data, f.address.0.to_vec());
    // Its forward active total: BCD 26 00 00 00 = 0.26 kWh.
    let f = decoded("fe fe fe fe 68 94 41 03 26 12 18 68 91 08 33 33 34 33 59 33 33 33 50 16");
    assert_eq!(energy(&f), 0.26);
    // Its voltage block (DI 02 01 FF 00): phase A first, 23 03 = 230.3 V (a single-phase meter:
    // B and C are 0).
    let f =
        decoded("fe fe fe fe 68 94 41 03 26 12 18 68 91 0a 33 32 34 35 36 56 33 33 33 33 b9 16");
    let va = quantity("voltage_a").unwrap();
    assert_eq!(
        decode_value(&[0x02, 0x01, 0xFF, 0x00], va.format, false, &f.data)
            .unwrap()
            .amount,
        230.3
    );
    // Its current block (DI 02 02 FF 00): phase A 00 01 88 = 0.188 A.
    let f = decoded(
        "fe fe fe fe 68 94 41 03 26 12 18 68 91 0d 33 32 35 35 bb 34 33 33 33 33 33 33 33 b9 16",
    );
    let ia = quantity("current_a").unwrap();
    assert_eq!(
        decode_value(&[0x02, 0x02, 0xFF, 0x00], ia.format, false, &f.data)
            .unwrap()
            .amount,
        0.188
    );
    // Other meters' forward active totals: 0.26 kWh (the driver printed "000000.26 kWh"),
    // 2,181.07 kWh, and 0.
    for (text, kwh) in [
        (
            "68 61 01 00 00 00 00 68 91 08 33 33 34 33 59 33 33 33 8a 16",
            0.26,
        ),
        (
            "68 02 00 00 00 00 99 68 91 08 33 33 34 33 3a b4 54 33 46 16",
            2181.07,
        ),
        (
            "68 49 00 30 07 21 20 68 91 08 33 33 34 33 33 33 33 33 c3 16",
            0.0,
        ),
        (
            "fe fe fe fe 68 67 48 60 10 00 00 68 91 08 33 33 34 33 33 33 33 33 21 16",
            0.0,
        ),
    ] {
        assert_eq!(energy(&decoded(text)), kwh, "{text}");
    }
    assert_eq!(
        decoded("68 02 00 00 00 00 99 68 91 08 33 33 34 33 3a b4 54 33 46 16").address,
        Address::parse("990000000002").unwrap()
    );
}
