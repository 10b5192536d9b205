//! Prometheus metrics: a small process-wide registry of counters, gauges and histograms with
//! labels, rendered in the text exposition format (`GET /metrics`). Label values are bounded
//! by design: tenants, sources, playbooks, actions, statuses — never alert or run ids.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

/// Default latency buckets, in seconds (1 ms to 60 s).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Most label sets one family keeps; past it, new sets are folded into `other`.
const MAX_SERIES: usize = 10_000;

#[derive(Debug)]
enum Kind {
    Counter,
    Gauge,
    Histogram(&'static [f64]),
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Debug)]
struct Family {
    help: &'static str,
    labels: &'static [&'static str],
    kind: Kind,
    values: BTreeMap<Vec<String>, f64>,
    histograms: BTreeMap<Vec<String>, Histogram>,
}

/// The process's metrics.
#[derive(Debug, Default)]
pub struct Registry {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

/// The process-wide registry.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

fn key(labels: &[&str]) -> Vec<String> {
    labels.iter().map(|l| (*l).to_owned()).collect()
}

impl Registry {
    fn with_family(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        kind: impl FnOnce() -> Kind,
        f: impl FnOnce(&mut Family),
    ) {
        let Ok(mut families) = self.families.lock() else {
            return;
        };
        let family = families.entry(name).or_insert_with(|| Family {
            help,
            labels,
            kind: kind(),
            values: BTreeMap::new(),
            histograms: BTreeMap::new(),
        });
        f(family);
    }

    /// Adds `by` to the counter `name{labels}`.
    pub fn inc_by(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        values: &[&str],
        by: f64,
    ) {
        self.with_family(
            name,
            help,
            labels,
            || Kind::Counter,
            |f| {
                let k = fold(&f.values, key(values));
                *f.values.entry(k).or_insert(0.0) += by;
            },
        );
    }

    /// Sets the gauge `name{labels}`.
    pub fn set(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        values: &[&str],
        value: f64,
    ) {
        self.with_family(
            name,
            help,
            labels,
            || Kind::Gauge,
            |f| {
                let k = fold(&f.values, key(values));
                f.values.insert(k, value);
            },
        );
    }

    /// Records one observation in the histogram `name{labels}`.
    pub fn observe(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        values: &[&str],
        value: f64,
    ) {
        self.with_family(
            name,
            help,
            labels,
            || Kind::Histogram(LATENCY_BUCKETS),
            |f| {
                let Kind::Histogram(bounds) = f.kind else {
                    return;
                };
                let k = fold(&f.histograms, key(values));
                let h = f.histograms.entry(k).or_insert_with(|| Histogram {
                    buckets: vec![0; bounds.len()],
                    ..Histogram::default()
                });
                for (i, bound) in bounds.iter().enumerate() {
                    if value <= *bound {
                        h.buckets[i] += 1;
                    }
                }
                h.sum += value;
                h.count += 1;
            },
        );
    }

    /// The text exposition of every family.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let Ok(families) = self.families.lock() else {
            return out;
        };
        for (name, f) in families.iter() {
            let kind = match f.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram(_) => "histogram",
            };
            let _ = writeln!(out, "# HELP {name} {}", f.help);
            let _ = writeln!(out, "# TYPE {name} {kind}");
            match f.kind {
                Kind::Counter | Kind::Gauge => {
                    for (values, v) in &f.values {
                        let _ =
                            writeln!(out, "{name}{} {}", labels(f.labels, values, None), num(*v));
                    }
                }
                Kind::Histogram(bounds) => {
                    for (values, h) in &f.histograms {
                        for (bound, n) in bounds.iter().zip(&h.buckets) {
                            let le = num(*bound);
                            let _ = writeln!(
                                out,
                                "{name}_bucket{} {n}",
                                labels(f.labels, values, Some(&le))
                            );
                        }
                        let _ = writeln!(
                            out,
                            "{name}_bucket{} {}",
                            labels(f.labels, values, Some("+Inf")),
                            h.count
                        );
                        let l = labels(f.labels, values, None);
                        let _ = writeln!(out, "{name}_sum{l} {}", num(h.sum));
                        let _ = writeln!(out, "{name}_count{l} {}", h.count);
                    }
                }
            }
        }
        out
    }
}

/// Past [`MAX_SERIES`] label sets, new ones are counted under `other`.
fn fold<V>(existing: &BTreeMap<Vec<String>, V>, key: Vec<String>) -> Vec<String> {
    if existing.len() >= MAX_SERIES && !existing.contains_key(&key) {
        key.iter().map(|_| "other".to_owned()).collect()
    } else {
        key
    }
}

fn num(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

fn labels(names: &[&str], values: &[String], le: Option<&str>) -> String {
    let mut parts: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_exposition_format() {
        let r = Registry::default();
        r.inc_by("t_total", "Things.", &["tenant"], &["a\"b"], 2.0);
        r.set("t_gauge", "Level.", &[], &[], 3.5);
        r.observe("t_seconds", "Time.", &["op"], &["x"], 0.003);
        let text = r.render();
        assert!(
            text.contains("# TYPE t_total counter\nt_total{tenant=\"a\\\"b\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("t_gauge 3.5"), "{text}");
        assert!(
            text.contains("t_seconds_bucket{op=\"x\",le=\"0.0025\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_bucket{op=\"x\",le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_bucket{op=\"x\",le=\"+Inf\"} 1"),
            "{text}"
        );
        assert!(text.contains("t_seconds_count{op=\"x\"} 1"), "{text}");
    }
}
