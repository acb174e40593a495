//! Decimal numbers as the lease table stores them, read and written without the general
//! formatting machinery: a leader decodes two 39-digit hash keys per row for every row of the
//! table on every scan, and every lease write spells out a counter or two.

use alloc::string::String;

/// Reads an unsigned decimal of at most 39 digits, the width of a hash key. The same values as
/// `str::parse::<u128>`, which it falls back to for anything but plain digits (a sign, an
/// empty string, an overflow), so errors are the standard library's too.
pub fn parse_u128(s: &str) -> Option<u128> {
    const MAX: &[u8] = b"340282366920938463463374607431768211455";
    let digits = s.as_bytes();
    let plain = !digits.is_empty() && digits.iter().all(u8::is_ascii_digit);
    // Digit strings of equal length compare as the numbers do, so this excludes overflow and
    // the joins below need no checked (and on u128, slow) arithmetic.
    if !plain || digits.len() > MAX.len() || (digits.len() == MAX.len() && digits > MAX) {
        return s.parse().ok();
    }
    // Chunks of at most 19 digits fit a u64.
    const CHUNK: usize = 19;
    const SCALE: u128 = 10_000_000_000_000_000_000;
    let head = digits.len() % CHUNK;
    let (first, rest) = digits.split_at(if head == 0 { CHUNK } else { head });
    let mut value = u128::from(chunk(first));
    for part in rest.chunks(CHUNK) {
        value = value * SCALE + u128::from(chunk(part));
    }
    Some(value)
}

/// At most 19 ASCII digits.
fn chunk(digits: &[u8]) -> u64 {
    digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'))
}

/// `n` in decimal, as `format!("{n}")` writes it.
pub fn format_u64(n: u64) -> String {
    let mut out = String::with_capacity(20);
    push_u64(&mut out, n);
    out
}

/// Appends `n` in decimal, as `write!(out, "{n}")` would.
pub fn push_u64(out: &mut String, n: u64) {
    push_u64_padded(out, n, 0);
}

/// Appends `n` in decimal with leading zeros to at least `width` digits, as
/// `write!(out, "{n:0width$}")` would (which writes the padding a character at a time).
pub fn push_u64_padded(out: &mut String, mut n: u64, width: usize) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    const ZEROS: &str = "0000000000000000000000000000000000000000";
    let mut pad = width.saturating_sub(buf.len() - at);
    while pad > 0 {
        let n = pad.min(ZEROS.len());
        out.push_str(&ZEROS[..n]);
        pad -= n;
    }
    // Only ASCII digits were written, so this always succeeds.
    if let Ok(digits) = core::str::from_utf8(&buf[at..]) {
        out.push_str(digits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

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
            assert_eq!(format_u64(n), format!("{n}"));
            for width in [0, 1, 3, 20, 36, 45, 81] {
                let mut s = String::from("x");
                push_u64_padded(&mut s, n, width);
                assert_eq!(s, format!("x{n:0width$}"));
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn every_u128_round_trips(n: u128, zeros in 0usize..4) {
            let s = format!("{}{n}", "0".repeat(zeros));
            proptest::prop_assert_eq!(parse_u128(&s), s.parse::<u128>().ok());
        }

        #[test]
        fn every_u64_formats(n: u64) {
            proptest::prop_assert_eq!(format_u64(n), format!("{n}"));
        }
    }
}
