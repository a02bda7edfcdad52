// SPDX-License-Identifier: GPL-2.0

//! `cache-model`: runs the random and exhaustive campaigns for both
//! policies and prints what they cost next to the minimum, then a random
//! campaign with bouncing (swiotlb) devices under `tracked`, which the
//! oracles do not model.
//!
//! Fails (exit 1) if any sequence reads stale data or loses a write under
//! either policy, or if `tracked` differs from the exporter oracle on any
//! sequence without bouncing devices. A failing random sequence is
//! reproduced with `cache-model --replay SEED`, one with bouncing devices
//! with `cache-model --replay-bounce SEED`.

use cache_model::{
    campaign::{self, Summary},
    oracle,
    ownership::Policy,
    rng::Rng,
    run::{self, Mutation},
    script::{self, Usage},
};

struct Args {
    sequences: u64,
    seed: u64,
    length: usize,
    depth: usize,
    replay: Option<u64>,
    bounce_seed: u64,
    replay_bounce: Option<u64>,
}

fn parse() -> Args {
    let mut a = Args {
        sequences: 100_000,
        seed: 0x5eed_d0a1,
        length: 60,
        depth: 5,
        replay: None,
        bounce_seed: 0xb0c3_5eed,
        replay_bounce: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        let number = || -> u64 {
            let v = value.trim_start_matches("0x");
            u64::from_str_radix(v, if value.starts_with("0x") { 16 } else { 10 }).unwrap_or_else(
                |_| {
                    eprintln!("cache-model: bad number for {flag}: {value}");
                    std::process::exit(2)
                },
            )
        };
        match flag.as_str() {
            "--sequences" => a.sequences = number(),
            "--seed" => a.seed = number(),
            "--length" => a.length = number() as usize,
            "--depth" => a.depth = number() as usize,
            "--replay" => a.replay = Some(number()),
            "--bounce-seed" => a.bounce_seed = number(),
            "--replay-bounce" => a.replay_bounce = Some(number()),
            _ => {
                eprintln!("usage: cache-model [--sequences N] [--seed S] [--length L] [--depth D] [--bounce-seed S] [--replay SEED] [--replay-bounce SEED]");
                std::process::exit(2)
            }
        }
    }
    a
}

fn mib(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / (1 << 20) as f64)
}

fn row(name: &str, s: &Summary) {
    row_with_oracle(name, s, &s.differs_from_oracle.to_string());
}

fn row_with_oracle(name: &str, s: &Summary, oracle: &str) {
    println!(
        "  {name:<28} {:>9} {:>6} {:>6} {:>12} {:>12} {:>12}",
        s.sequences,
        s.stale_reads,
        s.lost_writes,
        mib(s.cost.clean_bytes),
        mib(s.cost.invalidate_bytes),
        oracle
    );
}

fn header(title: &str) {
    println!("{title}");
    println!(
        "  {:<28} {:>9} {:>6} {:>6} {:>12} {:>12} {:>12}",
        "policy", "sequences", "stale", "lost", "clean MiB", "inval MiB", "!= oracle"
    );
}

fn minimum_rows(s: &Summary) {
    println!(
        "  {:<28} {:>9} {:>6} {:>6} {:>12} {:>12}",
        "oracle (exporter knowledge)",
        "",
        "",
        "",
        mib(s.oracle.clean_bytes),
        mib(s.oracle.invalidate_bytes)
    );
    println!(
        "  {:<28} {:>9} {:>6} {:>6} {:>12} {:>12}",
        "ground truth (sees accesses)",
        "",
        "",
        "",
        mib(s.ground_truth.clean_bytes),
        mib(s.ground_truth.invalidate_bytes)
    );
}

fn replay(seed: u64, length: usize) {
    let scenario = script::random(&mut Rng::new(seed), length, Usage::ANY);
    println!("devices (coherent?): {:?}", scenario.coherent);
    for step in &scenario.steps {
        println!("  {step:?}");
    }
    let outcome = run::run(&scenario, Policy::Tracked, Mutation::None);
    println!("tracked: {:?}", outcome);
    println!("oracle: {:?}", oracle::exporter_minimum(&scenario));
}

fn replay_bounce(seed: u64, length: usize) {
    let scenario = script::random_bouncing(&mut Rng::new(seed), length, Usage::ANY);
    println!("devices (coherent?): {:?}", scenario.coherent);
    println!("devices (fenced?): {:?}", scenario.fenced);
    println!("devices (bounce?): {:?}", scenario.bounce);
    for step in &scenario.steps {
        println!("  {step:?}");
    }
    let outcome = run::run(&scenario, Policy::Tracked, Mutation::None);
    println!("tracked: {:?}", outcome);
}

fn main() {
    let a = parse();
    if let Some(seed) = a.replay {
        replay(seed, a.length);
        return;
    }
    if let Some(seed) = a.replay_bounce {
        replay_bounce(seed, a.length);
        return;
    }
    let mut failed = Vec::new();
    let mut check = |what: &str, s: &Summary, must_equal_oracle: bool| {
        if !s.safe() || (must_equal_oracle && s.differs_from_oracle > 0) {
            let (id, why) = s
                .first_failure
                .clone()
                .unwrap_or((0, "cost differs from the oracle".into()));
            failed.push(format!("{what}: first failure {id:#x}: {why}"));
        }
    };

    header(&format!(
        "cache model: {} random sequences of ~{} steps (seed {:#x}), buffer of 3 lines x 2 words",
        a.sequences, a.length, a.seed
    ));
    let tracked = campaign::random(
        a.seed,
        a.sequences,
        a.length,
        Policy::Tracked,
        Usage::ANY,
        Mutation::None,
    );
    let tracked_strict = campaign::random(
        a.seed,
        a.sequences,
        a.length,
        Policy::Tracked,
        Usage::STRICT,
        Mutation::None,
    );
    let always = campaign::random(
        a.seed,
        a.sequences,
        a.length,
        Policy::Always,
        Usage::STRICT,
        Mutation::None,
    );
    println!("  any usage the core accepts:");
    row("tracked", &tracked);
    minimum_rows(&tracked);
    println!("  strict usage (the contract the system heap relies on):");
    row("tracked", &tracked_strict);
    row("always", &always);
    minimum_rows(&always);
    check("random tracked", &tracked, true);
    check("random tracked, strict usage", &tracked_strict, true);
    check("random always, strict usage", &always, false);

    println!();
    header(&format!(
        "exhaustive: every exporter-event sequence of up to {} events, 2 devices (both non-coherent, one coherent, or one fenced), 2 fixed + 3 random adversaries",
        a.depth
    ));
    let ex_tracked = campaign::exhaustive(a.depth, 3, Policy::Tracked, Usage::ANY, Mutation::None);
    let ex_always = campaign::exhaustive(a.depth, 3, Policy::Always, Usage::STRICT, Mutation::None);
    row("tracked (any usage)", &ex_tracked);
    minimum_rows(&ex_tracked);
    row("always (strict usage)", &ex_always);
    check("exhaustive tracked", &ex_tracked, true);
    check("exhaustive always", &ex_always, false);

    println!();
    header(&format!(
        "bouncing devices: {} random sequences of ~{} steps (seed {:#x}), {} % of non-coherent devices bounce, any usage",
        a.sequences,
        a.length,
        a.bounce_seed,
        script::BOUNCE_PERCENT
    ));
    let bouncing = campaign::bouncing(
        a.bounce_seed,
        a.sequences,
        a.length,
        Usage::ANY,
        Mutation::None,
    );
    row_with_oracle("tracked, bouncing devices", &bouncing, "n/a");
    check("random tracked, bouncing devices", &bouncing, false);

    let saved =
        100.0 * (1.0 - tracked_strict.cost.total() as f64 / always.cost.total().max(1) as f64);
    println!();
    println!("tracked does {saved:.1} % less maintenance than always on the same random sequences");
    let sequences = tracked.sequences
        + tracked_strict.sequences
        + always.sequences
        + ex_tracked.sequences
        + ex_always.sequences
        + bouncing.sequences;
    for f in &failed {
        println!("FAILED {f}");
    }
    println!(
        "model: {sequences} sequences checked, {} campaigns failed",
        failed.len()
    );
    if !failed.is_empty() {
        std::process::exit(1);
    }
}
