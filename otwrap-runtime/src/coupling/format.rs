//! How numbers are printed into input files: C's `%e` and `%f` exactly as
//! glibc prints them, or Rust's shortest round-trip representation.

use std::fmt::Write as _;

/// How a number is written into a template.
///
/// Rust and glibc both round the exact binary value correctly (ties to
/// even), so the digits are the same as C's; only the spelling of the
/// exponent and of infinities and NaNs is adapted.
///
/// ```
/// use otwrap_runtime::coupling::NumberFormat;
///
/// assert_eq!(NumberFormat::Scientific { digits: 6 }.format(3e4), "3.000000e+04");
/// assert_eq!(NumberFormat::Fixed { decimals: 2 }.format(-2.5), "-2.50");
/// assert_eq!(NumberFormat::Shortest.format(0.1), "0.1");
/// assert_eq!(NumberFormat::Shortest.format(1.5e-7), "1.5e-7");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NumberFormat {
    /// Like C's `%.{digits}e`: `3.000000e+04`, `1.500000e-07`, `-2.500000e+00`;
    /// the exponent has a sign and at least two digits.
    Scientific {
        /// Digits after the decimal point (C's precision; `%e` is 6).
        digits: usize,
    },
    /// Like C's `%.{decimals}f`: `30000.000000`.
    Fixed {
        /// Digits after the decimal point (C's precision; `%f` is 6).
        decimals: usize,
    },
    /// The shortest text that reads back as exactly the same `f64`: plain
    /// decimal (`30000`, `0.1`) when `1e-5 <= |x| < 1e16`, otherwise
    /// scientific (`1.5e-7`, `1e300`).
    #[default]
    Shortest,
}

impl NumberFormat {
    /// C's `%e`: `Scientific { digits: 6 }`.
    pub const C_E: NumberFormat = NumberFormat::Scientific { digits: 6 };

    /// Formats `value` into a new string.
    #[must_use]
    pub fn format(self, value: f64) -> String {
        let mut text = String::with_capacity(24);
        self.write(value, &mut text);
        text
    }

    /// Appends `value` to `out` without any intermediate allocation.
    ///
    /// Infinities and NaNs are written as glibc does: `inf`, `-inf`, `nan`,
    /// `-nan` (a NaN with its sign bit set).
    pub fn write(self, value: f64, out: &mut String) {
        if !value.is_finite() {
            if value.is_sign_negative() {
                out.push('-');
            }
            out.push_str(if value.is_nan() { "nan" } else { "inf" });
            return;
        }
        match self {
            NumberFormat::Scientific { digits } => write_scientific(value, digits, out),
            NumberFormat::Fixed { decimals } => {
                let _ = write!(out, "{value:.decimals$}");
            }
            NumberFormat::Shortest => {
                let magnitude = value.abs();
                if magnitude == 0.0 || (1e-5..1e16).contains(&magnitude) {
                    let _ = write!(out, "{value}");
                } else {
                    let _ = write!(out, "{value:e}");
                }
            }
        }
    }
}

/// Rust prints `3.000000e4`; C prints `3.000000e+04`. Format in place, then
/// rewrite the exponent.
fn write_scientific(value: f64, digits: usize, out: &mut String) {
    let start = out.len();
    let _ = write!(out, "{value:.digits$e}");
    let Some(e_at) = out[start..].rfind('e').map(|i| start + i) else {
        return;
    };
    let Ok(exponent) = out[e_at + 1..].parse::<i32>() else {
        return;
    };
    out.truncate(e_at);
    let sign = if exponent < 0 { '-' } else { '+' };
    let _ = write!(out, "e{sign}{:02}", exponent.unsigned_abs());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c_e(value: f64) -> String {
        NumberFormat::C_E.format(value)
    }

    #[test]
    fn scientific_matches_c_printf() {
        // Expected strings from glibc's printf("%e").
        assert_eq!(c_e(3e4), "3.000000e+04");
        assert_eq!(c_e(1.5e-7), "1.500000e-07");
        assert_eq!(c_e(-2.5), "-2.500000e+00");
        assert_eq!(c_e(0.0), "0.000000e+00");
        assert_eq!(c_e(-0.0), "-0.000000e+00");
        assert_eq!(c_e(1e300), "1.000000e+300");
        assert_eq!(c_e(5e-324), "4.940656e-324");
        assert_eq!(c_e(9.9999995e9), "1.000000e+10");
        assert_eq!(c_e(0.125), "1.250000e-01");
        assert_eq!(c_e(12.345678901), "1.234568e+01");
        let two_digits = NumberFormat::Scientific { digits: 2 };
        assert_eq!(two_digits.format(2.675), "2.67e+00");
        assert_eq!(NumberFormat::Scientific { digits: 0 }.format(2.5), "2e+00");
        assert_eq!(
            NumberFormat::Scientific { digits: 16 }.format(0.1),
            "1.0000000000000001e-01"
        );
    }

    #[test]
    fn fixed_matches_c_printf() {
        let f = NumberFormat::Fixed { decimals: 6 };
        assert_eq!(f.format(3e4), "30000.000000");
        assert_eq!(f.format(1.5e-7), "0.000000");
        assert_eq!(f.format(-2.5), "-2.500000");
        assert_eq!(NumberFormat::Fixed { decimals: 2 }.format(0.125), "0.12");
        assert_eq!(NumberFormat::Fixed { decimals: 0 }.format(0.5), "0");
    }

    #[test]
    fn non_finite_values_are_spelled_like_glibc() {
        for format in [
            NumberFormat::C_E,
            NumberFormat::Fixed { decimals: 3 },
            NumberFormat::Shortest,
        ] {
            assert_eq!(format.format(f64::INFINITY), "inf");
            assert_eq!(format.format(f64::NEG_INFINITY), "-inf");
            assert_eq!(format.format(f64::NAN), "nan");
            assert_eq!(format.format(-f64::NAN), "-nan");
        }
    }

    #[test]
    fn shortest_round_trips() {
        for value in [
            0.1,
            1.0 / 3.0,
            3e4,
            1.5e-7,
            -2.5,
            1e300,
            5e-324,
            123456789.125,
            1e16,
            9.999e15,
        ] {
            let text = NumberFormat::Shortest.format(value);
            assert_eq!(text.parse::<f64>().ok(), Some(value), "{text}");
        }
        assert_eq!(NumberFormat::Shortest.format(3e4), "30000");
        assert_eq!(NumberFormat::Shortest.format(1e16), "1e16");
        assert_eq!(NumberFormat::Shortest.format(0.0), "0");
    }

    #[test]
    fn write_appends() {
        let mut out = String::from("F=");
        NumberFormat::C_E.write(3e4, &mut out);
        out.push(';');
        assert_eq!(out, "F=3.000000e+04;");
    }
}
