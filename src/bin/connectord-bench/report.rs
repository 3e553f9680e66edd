//! Latency histograms, error counts and the printed report.

use std::{collections::BTreeMap, time::Duration};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::runner::Op;

/// Largest latency the histograms store, in microseconds. Slower calls are recorded as this.
const MAX_LATENCY_MICROS: u64 = 60_000_000;

/// Measured outcomes of one operation type.
#[derive(Debug, Clone)]
pub struct OpStats {
    pub latency_micros: Histogram<u64>,
    pub ok: u64,
    /// Failed calls by gRPC code name, or by "check" when the call returned OK but its
    /// response was wrong (such as an empty page).
    pub errors: BTreeMap<String, u64>,
}

impl OpStats {
    pub fn new() -> Self {
        Self {
            latency_micros: Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3)
                .expect("1 µs to 60 s at 3 significant figures is a valid histogram"),
            ok: 0,
            errors: BTreeMap::new(),
        }
    }

    /// Records one call; failed calls count in the latency histogram too, because a client
    /// waits for them all the same.
    pub fn record(&mut self, latency: Duration, outcome: &Result<(), String>) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, MAX_LATENCY_MICROS);
        self.latency_micros.saturating_record(micros);
        match outcome {
            Ok(()) => self.ok += 1,
            Err(kind) => *self.errors.entry(kind.clone()).or_default() += 1,
        }
    }

    pub fn merge(&mut self, other: &OpStats) {
        self.latency_micros.add(&other.latency_micros).expect("histograms with the same bounds merge");
        self.ok += other.ok;
        for (kind, count) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += count;
        }
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Latency summary in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Latency {
    fn of(histogram: &Histogram<u64>) -> Self {
        Self {
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: histogram.mean(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct OpReport {
    pub requests: u64,
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Successful calls per second of measured time.
    pub throughput_per_second: f64,
    pub latency_micros: Latency,
}

impl OpReport {
    fn of(stats: &OpStats, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        Self {
            requests: stats.ok + stats.error_count(),
            errors: stats.error_count(),
            errors_by_kind: stats.errors.clone(),
            throughput_per_second: stats.ok as f64 / seconds,
            latency_micros: Latency::of(&stats.latency_micros),
        }
    }
}

/// The whole result of `connectord-bench run`, printed as text or as one JSON object.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    pub workload: String,
    pub endpoint: String,
    pub concurrency: usize,
    pub connections: usize,
    pub value_size: usize,
    /// Bytes per etcd value, or 0 for connectord.
    pub etcd_value_bytes: usize,
    pub preloaded_keys: usize,
    pub warmup_seconds: f64,
    /// Time from the end of the warm-up to the last measured response.
    pub elapsed_seconds: f64,
    /// Every operation type together.
    #[serde(flatten)]
    pub total: OpReport,
    /// One entry per operation type that ran (more than one for the mixed workload).
    pub operations: BTreeMap<String, OpReport>,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        args: &crate::RunArgs,
        etcd_value_bytes: usize,
        preloaded_keys: usize,
        by_op: &BTreeMap<Op, OpStats>,
        elapsed: Duration,
    ) -> Self {
        let mut total = OpStats::new();
        let mut operations = BTreeMap::new();
        for (op, stats) in by_op {
            total.merge(stats);
            operations.insert(op.name().to_owned(), OpReport::of(stats, elapsed));
        }
        Self {
            target: format!("{:?}", args.target).to_lowercase(),
            workload: format!("{:?}", args.workload).to_lowercase(),
            endpoint: args.endpoint.clone(),
            concurrency: args.concurrency,
            connections: args.connections,
            value_size: args.value_size,
            etcd_value_bytes,
            preloaded_keys,
            warmup_seconds: args.warmup.as_secs_f64(),
            elapsed_seconds: elapsed.as_secs_f64(),
            total: OpReport::of(&total, elapsed),
            operations,
        }
    }

    pub fn text(&self) -> String {
        let mut text = format!(
            "{} {}: {} clients on {} connections, {} keys preloaded, {:.1} s measured\n",
            self.target, self.workload, self.concurrency, self.connections, self.preloaded_keys, self.elapsed_seconds
        );
        let mut line = |name: &str, report: &OpReport| {
            let latency = &report.latency_micros;
            text.push_str(&format!(
                "  {name:<7} {:>10.0} req/s  p50 {:>7} µs  p99 {:>7} µs  p99.9 {:>7} µs  max {:>8} µs  requests {}  errors {}",
                report.throughput_per_second, latency.p50, latency.p99, latency.p999, latency.max, report.requests, report.errors
            ));
            if !report.errors_by_kind.is_empty() {
                text.push_str(&format!("  {:?}", report.errors_by_kind));
            }
            text.push('\n');
        };
        line("total", &self.total);
        if self.operations.len() > 1 {
            for (name, report) in &self.operations {
                line(name, report);
            }
        }
        text
    }
}
