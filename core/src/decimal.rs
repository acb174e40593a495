//! Decimal numbers as the lease table stores them (hash keys, counters, throughputs), read and
//! written without the general formatting machinery. Each function gives exactly what the
//! standard library's parsing or formatting gives, which the tests check.

use alloc::string::String;

/// Reads an unsigned decimal of at most 39 digits, the width of a hash key. The same values as
/// `str::parse::<u128>`, which it falls back to for anything but plain digits (a sign, an
/// empty string, an overflow), so errors are the standard library's too.
pub(crate) fn parse_u128(s: &str) -> Option<u128> {
    const MAX: &[u8] = b"340282366920938463463374607431768211455";
    let digits = s.as_bytes();
    // Digit strings of equal length compare as the numbers do, so this excludes overflow and
    // the joins below need no checked (and on u128, slow) arithmetic.
    if !all_digits(digits)
        || digits.is_empty()
        || digits.len() > MAX.len()
        || (digits.len() == MAX.len() && digits > MAX)
    {
        return s.parse().ok();
    }
    let (head, eights) = digits.split_at(digits.len() % 8);
    let mut value = u128::from(head.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')));
    for part in eights.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(part);
        value = value * 100_000_000 + u128::from(eight_digits(word));
    }
    Some(value)
}

/// Whether every byte is an ASCII digit. Without an early exit, so that the compiler can test
/// many bytes at once: the strings checked (hash keys, sequence numbers) are 20 to 56 digits.
pub(crate) fn all_digits(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .fold(false, |bad, b| bad | (b.wrapping_sub(b'0') > 9))
        .eq(&false)
}

/// Eight ASCII digits, most significant first, as a number: the digits are combined in pairs,
/// then fours, then all eight, in three multiplications instead of eight.
fn eight_digits(word: [u8; 8]) -> u64 {
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    // Little-endian: the first (most significant) digit is the lowest byte.
    let v = u64::from_le_bytes(word).wrapping_sub(ZEROS);
    let pairs = v.wrapping_mul(10).wrapping_add(v >> 8) & 0x00ff_00ff_00ff_00ff;
    let fours = pairs.wrapping_mul(100).wrapping_add(pairs >> 16) & 0x0000_ffff_0000_ffff;
    fours.wrapping_mul(10_000).wrapping_add(fours >> 32) & 0xffff_ffff
}

/// `x` with three decimals, as `format!("{x:.3}")` writes it: every renewal writes its
/// throughput so, and the general float formatting costs ten times this. Values whose rounding
/// this cannot settle with plain `f64` arithmetic (within a millionth of a tie, negative, not
/// finite, or over four million) go to the formatter.
pub(crate) fn format_fixed3(x: f64) -> String {
    // Below 2^32 the product's rounding error is under 5e-7, so a fraction further than 1e-6
    // from one half rounds the same way as the exact value does.
    const FAST_BELOW: f64 = 4_294_967_296.0;
    let scaled = x * 1000.0;
    if !(0.0..FAST_BELOW).contains(&scaled) || x.is_sign_negative() {
        return alloc::format!("{x:.3}");
    }
    let whole = scaled as u64;
    let fraction = scaled - whole as f64;
    if (fraction - 0.5).abs() < 1e-6 {
        return alloc::format!("{x:.3}");
    }
    let thousandths = whole + u64::from(fraction > 0.5);
    let mut out = String::with_capacity(16);
    let mut digits = [0u8; 20];
    out.push_str(u64_digits(thousandths / 1000, &mut digits));
    out.push('.');
    let fraction = thousandths % 1000;
    for floor in [100, 10] {
        if fraction < floor {
            out.push('0');
        }
    }
    out.push_str(u64_digits(fraction, &mut digits));
    out
}

/// `n` in decimal, written at the end of `buf`.
pub(crate) fn u64_digits(mut n: u64, buf: &mut [u8; 20]) -> &str {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let mut at = buf.len();
    // Two digits per division.
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        at -= 2;
        buf[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        at -= 2;
        buf[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        at -= 1;
        buf[at] = b'0' + n as u8;
    }
    // Only ASCII digits were written, so this always succeeds.
    core::str::from_utf8(&buf[at..]).unwrap_or("0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn fixed3_writes_what_the_formatter_writes() {
        let edges = [
            0.0,
            -0.0,
            0.0005,
            0.0015,
            0.0025,
            1.0005,
            2.4995,
            0.9995,
            999.9995,
            1e-9,
            0.1,
            0.7,
            123.456,
            4_294_967.295,
            4_294_967.296,
            5e6,
            -1.5,
            f64::NAN,
            f64::INFINITY,
        ];
        for x in edges {
            assert_eq!(format_fixed3(x), format!("{x:.3}"), "{x:e}");
        }
        // Throughputs as renewals compute them: halves of bytes per second over 1 KiB.
        let mut t = 0.0f64;
        for bytes in 0..20_000u64 {
            t = 0.5 * t + 0.5 * ((bytes * 7919 % 100_003) as f64 / 1024.0) / 3.316;
            assert_eq!(format_fixed3(t), format!("{t:.3}"), "{t:e}");
        }
    }

    #[test]
    fn parses_as_the_standard_library_does() {
        for s in [
            "0",
            "7",
            "0000000000000000000000000000000000001",
            "1234567890123456789",
            "12345678901234567890",
            "340282366920938463463374607431768211455",
            "340282366920938463463374607431768211456",
            "999999999999999999999999999999999999999",
            "1000000000000000000000000000000000000000",
            "",
            "+5",
            "-1",
            "12a",
            " 1",
        ] {
            assert_eq!(parse_u128(s), s.parse::<u128>().ok(), "{s:?}");
        }
    }

    #[test]
    fn formats_as_the_standard_library_does() {
        for n in [0, 1, 9, 10, 99, 100, 1_000_000_007, u64::MAX - 1, u64::MAX] {
            let mut buf = [0u8; 20];
            assert_eq!(u64_digits(n, &mut buf), format!("{n}"));
        }
    }

    proptest::proptest! {
        #[test]
        fn every_u128_round_trips(n: u128, zeros in 0usize..4) {
            let s = format!("{}{n}", "0".repeat(zeros));
            proptest::prop_assert_eq!(parse_u128(&s), s.parse::<u128>().ok());
        }

        #[test]
        fn digits_with_anything_mixed_in_parse_as_the_standard_library_does(
            s in "[0-9]{0,40}[^0-9]?[0-9]{0,40}"
        ) {
            proptest::prop_assert_eq!(parse_u128(&s), s.parse::<u128>().ok());
            proptest::prop_assert_eq!(all_digits(s.as_bytes()), s.bytes().all(|b| b.is_ascii_digit()));
        }

        #[test]
        fn every_u64_formats(n: u64) {
            let mut buf = [0u8; 20];
            proptest::prop_assert_eq!(u64_digits(n, &mut buf), format!("{n}"));
        }

        #[test]
        fn every_float_formats_with_three_decimals(x: f64, small in 0.0f64..10_000.0) {
            proptest::prop_assert_eq!(format_fixed3(x), format!("{x:.3}"));
            proptest::prop_assert_eq!(format_fixed3(small), format!("{small:.3}"));
        }

        #[test]
        fn thousandths_and_near_ties_format_with_three_decimals(n in 0u64..10_000_000, ulps in -3i64..=3) {
            // n / 2000 is a tie (or a thousandth) in decimal, never in binary: the cases the
            // fast path must leave to the formatter or round right.
            let x = f64::from_bits((n as f64 / 2000.0).to_bits().saturating_add_signed(ulps));
            proptest::prop_assert_eq!(format_fixed3(x), format!("{x:.3}"));
        }
    }
}
