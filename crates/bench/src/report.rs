//! The comparison table: per workload, both targets' throughput and latency and their ratios.

use std::collections::BTreeMap;
use std::fmt::Write;

use pgwarden_tests::Target;

use crate::load::Sample;
use crate::load::Workload;

#[derive(Debug, Default)]
pub struct Report {
    /// (workload) → samples per target, one per round.
    samples: BTreeMap<Workload, (Vec<Sample>, Vec<Sample>)>,
    /// Resident KiB of all members after the fill, per target.
    memory: (Option<u64>, Option<u64>),
}

impl Report {
    pub fn add(&mut self, target: Target, workload: Workload, sample: Sample) {
        let entry = self.samples.entry(workload).or_default();
        match target {
            Target::Pgwarden => entry.0.push(sample),
            Target::Etcd => entry.1.push(sample),
        }
    }

    pub fn add_memory(&mut self, target: Target, resident_kib: u64) {
        match target {
            Target::Pgwarden => self.memory.0 = Some(resident_kib),
            Target::Etcd => self.memory.1 = Some(resident_kib),
        }
    }

    /// Throughput is the mean over rounds; latency percentiles are over all rounds' ops merged.
    pub fn render(&self, members: usize, value_size: usize, load_keys: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n{members}-member clusters on loopback, {value_size}-byte values, leader endpoint, same machine, alternating rounds\n"
        );
        let _ = writeln!(
            out,
            "| workload | pgwarden ops/s | etcd ops/s | ratio | pgwarden p50 / p99 ms | etcd p50 / p99 ms | p99 ratio | errors (pgw/etcd) |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for (workload, (pgwarden, etcd)) in &self.samples {
            let pgwarden = merged(pgwarden);
            let etcd = merged(etcd);
            // A target run with `--only` has no samples: its cells and the ratios read "—".
            let ops = |m: &Option<Merged>| m.as_ref().map(|m| format!("{:.0}", m.ops));
            let latency = |m: &Option<Merged>| {
                m.as_ref().map(|m| {
                    format!(
                        "{:.2} / {:.2}",
                        m.sample.percentile_ms(0.5),
                        m.sample.percentile_ms(0.99)
                    )
                })
            };
            let errors = |m: &Option<Merged>| m.as_ref().map(|m| m.sample.errors.to_string());
            let both = pgwarden.as_ref().zip(etcd.as_ref());
            let _ = writeln!(
                out,
                "| {workload} | {} | {} | {} | {} | {} | {} | {} / {} |",
                dash(ops(&pgwarden)),
                dash(ops(&etcd)),
                dash(both.map(|(p, e)| format!("{:.2}×", p.ops / e.ops))),
                dash(latency(&pgwarden)),
                dash(latency(&etcd)),
                dash(both.map(|(p, e)| format!(
                    "{:.2}",
                    p.sample.percentile_ms(0.99) / e.sample.percentile_ms(0.99)
                ))),
                dash(errors(&pgwarden)),
                dash(errors(&etcd)),
            );
        }
        if let (Some(pgwarden), Some(etcd)) = self.memory {
            let _ = writeln!(
                out,
                "\nresident memory after {load_keys} keys (sum of members): pgwarden {} MiB, etcd {} MiB, ratio {:.2}×",
                pgwarden / 1024,
                etcd / 1024,
                pgwarden as f64 / etcd as f64
            );
        }
        out
    }
}

struct Merged {
    ops: f64,
    sample: Sample,
}

fn dash(cell: Option<String>) -> String {
    cell.unwrap_or_else(|| "—".to_owned())
}

/// `None` when the target did not run.
fn merged(samples: &[Sample]) -> Option<Merged> {
    if samples.is_empty() {
        return None;
    }
    let ops = samples.iter().map(Sample::ops_per_second).sum::<f64>() / samples.len() as f64;
    let mut sample = Sample::default();
    for one in samples {
        sample.latencies_us.extend_from_slice(&one.latencies_us);
        sample.errors += one.errors;
    }
    sample.latencies_us.sort_unstable();
    Some(Merged { ops, sample })
}
