//! Latency histograms and the formatting of durations, sizes and ratios.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// A latency histogram in nanoseconds (1 ns to 10 min, 3 significant figures).
pub struct Lat(Histogram<u64>);

impl Default for Lat {
    fn default() -> Self {
        Lat(Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds"))
    }
}

impl Lat {
    pub fn record(&mut self, d: Duration) {
        self.record_ns(d.as_nanos().min(u128::from(u64::MAX)) as u64);
    }

    pub fn record_ns(&mut self, ns: u64) {
        self.0.saturating_record(ns.max(1));
    }

    pub fn record_us(&mut self, us: u64) {
        self.record_ns(us.saturating_mul(1000));
    }

    pub fn add(&mut self, other: &Lat) {
        // Same bounds on both sides, so this cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// Percentiles in milliseconds.
    pub fn summary(&self) -> LatSummary {
        let ms = |ns: u64| ns as f64 / 1e6;
        if self.0.is_empty() {
            return LatSummary::default();
        }
        LatSummary {
            count: self.0.len(),
            mean_ms: self.0.mean() / 1e6,
            p50_ms: ms(self.0.value_at_quantile(0.50)),
            p95_ms: ms(self.0.value_at_quantile(0.95)),
            p99_ms: ms(self.0.value_at_quantile(0.99)),
            max_ms: ms(self.0.max()),
        }
    }
}

/// Percentiles of a latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatSummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// A duration in milliseconds, with a unit and precision that suit its size:
/// `0.21 ms`, `4.87 ms`, `46.2 ms`, `133 ms`, `2.41 s`.
pub fn fmt_ms(ms: f64) -> String {
    if !ms.is_finite() {
        return "-".into();
    }
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

/// Seconds with one or two decimals.
pub fn fmt_secs(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.2} s")
    } else {
        format!("{s:.1} s")
    }
}

/// A byte count in KiB/MiB/GiB.
pub fn fmt_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.0} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

/// An integer with thousands separators: 1113297 -> `1,113,297`.
pub fn fmt_int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    let first = s.len() % 3;
    for (i, c) in s.chars().enumerate() {
        if i > 0 && i % 3 == first {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// How many times `peer` is of `base`: `(63x)`, `(1.4x)`, `(0.35x)`.
pub fn fmt_ratio(peer: f64, base: f64) -> String {
    if !(peer.is_finite() && base.is_finite()) || base <= 0.0 {
        return String::new();
    }
    let r = peer / base;
    if r >= 10.0 {
        format!("({r:.0}x)")
    } else if r >= 1.0 {
        format!("({r:.1}x)")
    } else {
        format!("({r:.2}x)")
    }
}

/// A fraction as a percentage with one decimal.
pub fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_formatting() {
        let mut l = Lat::default();
        for i in 1..=1000u64 {
            l.record_us(i);
        }
        let s = l.summary();
        assert_eq!(s.count, 1000);
        assert!((s.p50_ms - 0.5).abs() < 0.01, "{s:?}");
        assert!((s.p99_ms - 0.99).abs() < 0.01, "{s:?}");
        assert!((s.max_ms - 1.0).abs() < 0.01, "{s:?}");
        let mut m = Lat::default();
        m.add(&l);
        assert_eq!(m.summary().count, 1000);
        assert_eq!(Lat::default().summary(), LatSummary::default());

        assert_eq!(fmt_ms(0.214), "0.21 ms");
        assert_eq!(fmt_ms(46.24), "46.2 ms");
        assert_eq!(fmt_ms(133.4), "133 ms");
        assert_eq!(fmt_ms(2410.0), "2.41 s");
        assert_eq!(fmt_int(1_113_297), "1,113,297");
        assert_eq!(fmt_int(999), "999");
        assert_eq!(fmt_ratio(133.0, 2.1), "(63x)");
        assert_eq!(fmt_ratio(46.0, 33.0), "(1.4x)");
        assert_eq!(fmt_ratio(7.4, 21.0), "(0.35x)");
        assert_eq!(fmt_ratio(1.0, 0.0), "");
        assert_eq!(fmt_bytes(3 * 1024 * 1024), "3 MiB");
        assert_eq!(pct(0.9166), "91.7%");
    }
}
