//! Soak mode of the chaos suite (not run by CI; needs root, `ip` and `nft`, and a built
//! `target/debug/pgwarden`):
//!
//! ```text
//! cargo run -p chaos-tests --example soak -- --minutes N [--seed S] [--faults A,B,...]
//! cargo run -p chaos-tests --example soak -- --minutes N --load-only
//! ```
//!
//! The first form runs scenario after scenario, each on a fresh three-host cluster with a
//! fault drawn at random (seeded; the seed is printed so a run can be repeated) from every
//! fault, or from the `--faults` list (names as in `Fault`'s Debug form, e.g.
//! `KillPrimaryHost,PartitionPrimary`), until N minutes have passed, with all of a
//! scenario's checks ((a) one writable primary, (b) no acknowledged write lost, (c) the
//! store's history linearizable, (d) healed). It stops at the first failing scenario
//! (`CHAOS_KEEP_FILES=1` keeps that cluster's files) and exits 1.
//!
//! `--load-only` runs one scenario without a fault: N minutes of a busy loop on every core
//! and `dd` writes with fsync, with the same checks; any change of primary fails it.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use chaos_tests::{Fault, run};

/// Every fault soak mode draws from by default.
const FAULTS: &[Fault] = &[
    Fault::KillPrimaryHost,
    Fault::PartitionPrimary,
    Fault::FreezePrimaryAgent,
    Fault::PartitionReplica,
    Fault::PartitionRaftLeaderReplica,
    Fault::KillPrimaryAgent,
    Fault::FreezePrimaryHost,
    Fault::KillRaftLeaderReplica,
    Fault::RollingRestart,
    Fault::ConcurrentSwitchovers,
    Fault::OneWayIntoPrimary,
    Fault::OneWayFromPrimary,
    Fault::LossyPrimary,
    Fault::PrimaryDiskFull,
    Fault::PrimaryDiskStall,
    Fault::ClockStepPrimary,
];

#[derive(Debug)]
struct Options {
    minutes: u64,
    seed: u64,
    faults: Vec<Fault>,
    load_only: bool,
}

fn parse(args: impl Iterator<Item = String>) -> anyhow::Result<Options> {
    let mut options = Options {
        minutes: 0,
        seed: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |now| now.as_secs()),
        faults: FAULTS.to_vec(),
        load_only: false,
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().with_context(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "--minutes" => {
                options.minutes = value("--minutes")?
                    .parse()
                    .context("--minutes takes a whole number")?;
            }
            "--seed" => {
                options.seed = value("--seed")?
                    .parse()
                    .context("--seed takes a whole number")?;
            }
            "--faults" => {
                options.faults = value("--faults")?
                    .split(',')
                    .map(|name| {
                        FAULTS
                            .iter()
                            .copied()
                            .find(|fault| format!("{fault:?}") == name.trim())
                            .with_context(|| format!("unknown fault {name:?}; known: {FAULTS:?}"))
                    })
                    .collect::<anyhow::Result<_>>()?;
            }
            "--load-only" => options.load_only = true,
            other => bail!(
                "unknown argument {other:?}; usage: soak --minutes N [--seed S] [--faults A,B] [--load-only]"
            ),
        }
    }
    if options.minutes == 0 {
        bail!("--minutes N (N > 0) is required");
    }
    Ok(options)
}

/// Runs one scenario on a thread of its own: a scenario moves its thread into its cluster's
/// hub namespace, which must not outlive the scenario.
fn scenario(name: String, fault: Fault) -> anyhow::Result<()> {
    std::thread::spawn(move || run(&name, fault))
        .join()
        .map_err(|_| anyhow::anyhow!("the scenario thread panicked"))?
}

fn main() -> anyhow::Result<()> {
    let options = parse(std::env::args().skip(1))?;
    let duration = Duration::from_secs(options.minutes * 60);
    if options.load_only {
        let name = format!("load only {} min", options.minutes);
        scenario(
            name,
            Fault::Load {
                seconds: duration.as_secs(),
            },
        )?;
        println!("soak: load only for {duration:?}: passed");
        return Ok(());
    }
    println!(
        "soak: {} minutes of random faults from {:?}, seed {}",
        options.minutes, options.faults, options.seed
    );
    let began = Instant::now();
    let deadline = began + duration;
    let mut random = options.seed;
    let mut passed: Vec<Fault> = Vec::new();
    while Instant::now() < deadline {
        random = random
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let fault = options.faults[((random >> 33) % options.faults.len() as u64) as usize];
        let name = format!("soak {} {fault:?}", passed.len() + 1);
        let started = Instant::now();
        if let Err(error) = scenario(name.clone(), fault) {
            println!(
                "soak: {name} FAILED after {:.0?} ({} passed before it; seed {}): {error:#}",
                started.elapsed(),
                passed.len(),
                options.seed
            );
            std::process::exit(1);
        }
        passed.push(fault);
    }
    println!(
        "soak: {} scenarios passed in {:.0?} (seed {}): {passed:?}",
        passed.len(),
        began.elapsed(),
        options.seed
    );
    Ok(())
}
