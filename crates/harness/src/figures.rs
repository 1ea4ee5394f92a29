//! How the harness writes a figure for a person to read, in tables and on charts.

/// A number for an axis or a bar: about three significant figures, no exponent.
pub(crate) fn short(v: f64) -> String {
    let magnitude = v.abs();
    if !v.is_finite() {
        "n/a".to_owned()
    } else if magnitude >= 100.0 || magnitude == 0.0 {
        format!("{v:.0}")
    } else if magnitude >= 10.0 {
        format!("{v:.1}")
    } else if magnitude >= 1.0 {
        format!("{v:.2}")
    } else {
        // Enough decimals for three significant figures of a small value.
        let decimals = (2 - magnitude.log10().floor() as i64).clamp(2, 9) as usize;
        format!("{v:.decimals$}")
    }
}

/// A power-of-two size as people write it: `256 KiB`, `1 MiB`.
pub(crate) fn bytes(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_numbers() {
        assert_eq!(short(1234.4), "1234");
        assert_eq!(short(12.34), "12.3");
        assert_eq!(short(1.234), "1.23");
        assert_eq!(short(0.01234), "0.0123");
        assert_eq!(short(0.0), "0");
        assert_eq!(short(f64::NAN), "n/a");
        assert_eq!(bytes(4 << 20), "4 MiB");
        assert_eq!(bytes(256 << 10), "256 KiB");
        assert_eq!(bytes(100), "100 B");
    }
}
