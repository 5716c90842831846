//! Telemetry of tool executions (migration `0016_telemetry` on both backends): the raw
//! events, each once by its idempotency key, and roll-ups per tool, version, capability,
//! pattern, environment and hour, maintained at ingest in the same transaction, so that
//! reports read roll-ups and never scan events. A roll-up keeps counts, sums, minimums and
//! maximums of the actual time and cost, and the ratio actual/estimate as a sum and as a
//! histogram of [`RATIO_BUCKETS`] logarithmic buckets (for its median).

use async_trait::async_trait;
use jiff::Timestamp;
use quiver_model::Result;
use serde::{Deserialize, Serialize};

/// Buckets of the ratio actual/estimate: bucket `i` holds ratios in
/// `[2^((i - 16) / 4), 2^((i - 15) / 4))` (quarter powers of two from 1/16 to 16; the
/// first and last take what is beyond).
pub const RATIO_BUCKETS: usize = 33;

/// The bucket of a ratio.
pub fn ratio_bucket(ratio: f64) -> usize {
    if ratio.is_nan() || ratio <= 0.0 {
        return 0;
    }
    let i = (ratio.log2() * 4.0).floor() + 16.0;
    i.clamp(0.0, (RATIO_BUCKETS - 1) as f64) as usize
}

/// The middle of a bucket, as a ratio.
pub fn bucket_ratio(i: usize) -> f64 {
    2f64.powf((i as f64 - 16.0 + 0.5) / 4.0)
}

/// The median ratio of a histogram (`None` when empty).
pub fn median_ratio(buckets: &[u64]) -> Option<f64> {
    let n: u64 = buckets.iter().sum();
    if n == 0 {
        return None;
    }
    let mut seen = 0;
    for (i, c) in buckets.iter().enumerate() {
        seen += c;
        if seen * 2 >= n {
            return Some(bucket_ratio(i));
        }
    }
    None
}

/// One execution to record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    /// The caller's idempotency key: a retried batch counts once.
    pub event_key: String,
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub capability: String,
    pub pattern: String,
    pub environment: String,
    pub execution_id: Option<String>,
    pub at: Timestamp,
    pub time_ms: f64,
    pub cost: Option<f64>,
    /// The pattern's time estimate for the event's variables, when it could be evaluated.
    pub estimate_ms: Option<f64>,
    pub success: bool,
    pub error: Option<String>,
    /// The context variables, as JSON.
    pub variables: serde_json::Value,
}

impl Execution {
    /// actual / estimate, when the estimate is positive.
    pub fn ratio(&self) -> Option<f64> {
        self.estimate_ms
            .filter(|e| *e > 0.0)
            .map(|e| self.time_ms / e)
            .filter(|r| r.is_finite())
    }

    /// The start of the event's hour, ms since the epoch.
    pub fn hour_ms(&self) -> i64 {
        self.at.as_millisecond().div_euclid(3_600_000) * 3_600_000
    }
}

/// What an ingest did.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct IngestOutcome {
    pub accepted: u64,
    /// Events whose key was recorded before (not counted again).
    pub duplicates: u64,
}

/// One roll-up row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollup {
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub capability: String,
    pub pattern: String,
    pub environment: String,
    /// The hour's start, ms since the epoch.
    pub hour: i64,
    pub count: u64,
    pub successes: u64,
    pub time_sum: f64,
    pub time_min: f64,
    pub time_max: f64,
    pub cost_count: u64,
    pub cost_sum: f64,
    pub ratio_count: u64,
    pub ratio_sum: f64,
    pub ratio_buckets: Vec<u64>,
}

/// Which roll-ups to read: a window of hours, and optionally one pattern.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollupFilter {
    /// `(namespace, name, capability, pattern)`; all patterns when `None`.
    pub pattern: Option<(String, String, String, String)>,
    /// Hours starting at or after this (ms).
    pub since: i64,
    /// Hours starting before this (ms).
    pub until: i64,
}

#[async_trait]
pub trait TelemetryStore: Send + Sync + 'static {
    /// Record `events` in one transaction: each new key once, with its roll-up updated;
    /// a key seen before is a duplicate and changes nothing.
    async fn ingest(&self, events: Vec<Execution>) -> Result<IngestOutcome>;
    /// The roll-ups in the window, ordered by pattern, version, environment and hour.
    async fn rollups(&self, filter: &RollupFilter) -> Result<Vec<Rollup>>;
    /// The raw events of the filter's pattern (required) whose time is in the window
    /// (`since`..`until`, ms), newest first, at most `limit`.
    async fn executions(&self, filter: &RollupFilter, limit: usize) -> Result<Vec<Execution>>;
}

/// The roll-up an event belongs to: (namespace, name, capability, pattern, version,
/// environment, hour).
pub type RollupKey = (String, String, String, String, String, String, i64);

impl Execution {
    pub fn rollup_key(&self) -> RollupKey {
        (
            self.namespace.clone(),
            self.name.clone(),
            self.capability.clone(),
            self.pattern.clone(),
            self.version.clone(),
            self.environment.clone(),
            self.hour_ms(),
        )
    }
}

impl Rollup {
    /// A roll-up with nothing in it yet, for `key`.
    pub fn empty(key: &RollupKey) -> Rollup {
        Rollup {
            namespace: key.0.clone(),
            name: key.1.clone(),
            capability: key.2.clone(),
            pattern: key.3.clone(),
            version: key.4.clone(),
            environment: key.5.clone(),
            hour: key.6,
            count: 0,
            successes: 0,
            time_sum: 0.0,
            time_min: f64::INFINITY,
            time_max: f64::NEG_INFINITY,
            cost_count: 0,
            cost_sum: 0.0,
            ratio_count: 0,
            ratio_sum: 0.0,
            ratio_buckets: vec![0; RATIO_BUCKETS],
        }
    }

    /// This roll-up with one more event (of its key).
    pub fn add(&mut self, e: &Execution) {
        self.count += 1;
        self.successes += u64::from(e.success);
        self.time_sum += e.time_ms;
        self.time_min = self.time_min.min(e.time_ms);
        self.time_max = self.time_max.max(e.time_ms);
        if let Some(c) = e.cost {
            self.cost_count += 1;
            self.cost_sum += c;
        }
        if let Some(r) = e.ratio() {
            self.ratio_count += 1;
            self.ratio_sum += r;
            self.ratio_buckets.resize(RATIO_BUCKETS, 0);
            self.ratio_buckets[ratio_bucket(r)] += 1;
        }
    }

    /// Another roll-up of the same pattern folded into this one (a report's sums).
    pub fn merge(&mut self, o: &Rollup) {
        self.count += o.count;
        self.successes += o.successes;
        self.time_sum += o.time_sum;
        self.time_min = self.time_min.min(o.time_min);
        self.time_max = self.time_max.max(o.time_max);
        self.cost_count += o.cost_count;
        self.cost_sum += o.cost_sum;
        self.ratio_count += o.ratio_count;
        self.ratio_sum += o.ratio_sum;
        self.ratio_buckets.resize(RATIO_BUCKETS, 0);
        for (a, b) in self.ratio_buckets.iter_mut().zip(&o.ratio_buckets) {
            *a += b;
        }
    }
}

/// The buckets' text form in the database: counts joined by commas.
pub fn encode_buckets(b: &[u64]) -> String {
    b.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

pub fn decode_buckets(s: &str) -> Vec<u64> {
    let mut v: Vec<u64> = s.split(',').filter_map(|x| x.parse().ok()).collect();
    v.resize(RATIO_BUCKETS, 0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_medians() {
        assert_eq!(ratio_bucket(1.0), 16);
        assert_eq!(ratio_bucket(2.0), 20);
        assert_eq!(ratio_bucket(0.5), 12);
        assert_eq!(ratio_bucket(1e9), RATIO_BUCKETS - 1);
        assert_eq!(ratio_bucket(0.0), 0);
        assert_eq!(ratio_bucket(f64::NAN), 0);
        let mut b = vec![0; RATIO_BUCKETS];
        b[ratio_bucket(2.0)] = 3;
        b[ratio_bucket(1.0)] = 1;
        let m = median_ratio(&b).unwrap();
        assert!((1.9..2.4).contains(&m), "{m}");
        assert_eq!(median_ratio(&[0; 3]), None);
        assert_eq!(decode_buckets(&encode_buckets(&b)), b);
    }
}
