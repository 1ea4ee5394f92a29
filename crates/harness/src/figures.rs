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
    }
}
