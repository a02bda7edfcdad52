// SPDX-License-Identifier: GPL-2.0

//! `cache-model`: runs the random and exhaustive campaigns for both
//! policies and prints what they cost next to the minimum, then a random
//! campaign with bouncing (swiotlb) devices under `tracked`, which the
//! oracles do not model, then a campaign whose user space skips SYNC.
//!
//! Every campaign of `tracked` runs twice: with user access trusted (the
//! exporter sees only brackets) and trapped (`unbracketed_cpu=trap`: user
//! page-table entries come from faults). Trapping must keep disciplined
//! sequences safe and cost them no maintenance; on undisciplined ones it
//! must be safe where trusting is not, and cost no more than the system
//! heap (`always`) in total.
//!
//! Fails (exit 1) if any sequence reads stale data or loses a write under
//! either policy (for undisciplined sequences: under `tracked` with trap,
//! or `always`), if `tracked` differs from the exporter oracle on any
//! sequence without bouncing devices (trusting user access), if trusting
//! undisciplined user space or ignoring revocations goes unnoticed, or if
//! trapping costs more than `always` in total on undisciplined sequences,
//! or if trapping costs a disciplined (strict) sequence more than trusting
//! (a rule gap; `--trap-cost report` only reports it).
//! A failing random sequence is reproduced with `cache-model --replay
//! SEED`, one with bouncing devices with `--replay-bounce SEED`, one with
//! user space that skips SYNC with `--replay-undisciplined SEED` (or
//! `--replay-undisciplined-bounce SEED`, on an uncached buffer
//! `--replay-uncached-undisciplined SEED`), one whose processes die inside
//! their brackets with `--replay-dying SEED`; `--usage strict`, `--policy` and
//! `--mode` choose the usage and the run that is traced.

use cache_model::{
    campaign::{self, Comparison, Config, Oracles, Summary},
    oracle,
    ownership::Policy,
    rng::Rng,
    run::{self, Mode, Mutation},
    script::{self, Scenario, Usage},
};

struct Args {
    sequences: u64,
    seed: u64,
    length: usize,
    depth: usize,
    replay: Option<u64>,
    bounce_seed: u64,
    replay_bounce: Option<u64>,
    undisciplined_seed: u64,
    replay_undisciplined: Option<u64>,
    replay_undisciplined_bounce: Option<u64>,
    /// An uncached campaign's sequence whose user space skips SYNC.
    replay_uncached_undisciplined: Option<u64>,
    /// A sequence whose processes die inside their brackets.
    replay_dying: Option<u64>,
    /// A range campaign's sequence (`--unbracketed yes` for the one with
    /// user space that skips SYNC).
    replay_ranged: Option<u64>,
    unbracketed: bool,
    usage: Usage,
    policy: Policy,
    mode: Option<Mode>,
    trap_cost_fatal: bool,
}

const USAGE: &str = "usage: cache-model [--sequences N] [--seed S] [--length L] [--depth D] [--bounce-seed S] [--undisciplined-seed S] [--trap-cost report|fatal] [--replay SEED] [--replay-bounce SEED] [--replay-undisciplined SEED] [--replay-undisciplined-bounce SEED] [--replay-uncached-undisciplined SEED] [--replay-dying SEED] [--replay-ranged SEED [--unbracketed yes|no]] [--usage any|strict] [--policy tracked|always] [--mode trap|trust|trap-huge]";

fn parse() -> Args {
    let mut a = Args {
        sequences: 100_000,
        seed: 0x5eed_d0a1,
        length: 60,
        depth: 5,
        replay: None,
        bounce_seed: 0xb0c3_5eed,
        replay_bounce: None,
        undisciplined_seed: 0x5eed_5c1b,
        replay_undisciplined: None,
        replay_undisciplined_bounce: None,
        replay_uncached_undisciplined: None,
        replay_dying: None,
        replay_ranged: None,
        unbracketed: false,
        usage: Usage::ANY,
        policy: Policy::Tracked,
        mode: None,
        trap_cost_fatal: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        let bad = || -> ! {
            eprintln!("cache-model: bad value for {flag}: {value}");
            std::process::exit(2)
        };
        let number = || -> u64 {
            let v = value.trim_start_matches("0x");
            u64::from_str_radix(v, if value.starts_with("0x") { 16 } else { 10 })
                .unwrap_or_else(|_| bad())
        };
        match flag.as_str() {
            "--sequences" => a.sequences = number(),
            "--seed" => a.seed = number(),
            "--length" => a.length = number() as usize,
            "--depth" => a.depth = number() as usize,
            "--replay" => a.replay = Some(number()),
            "--bounce-seed" => a.bounce_seed = number(),
            "--replay-bounce" => a.replay_bounce = Some(number()),
            "--undisciplined-seed" => a.undisciplined_seed = number(),
            "--replay-undisciplined" => a.replay_undisciplined = Some(number()),
            "--replay-undisciplined-bounce" => a.replay_undisciplined_bounce = Some(number()),
            "--replay-uncached-undisciplined" => a.replay_uncached_undisciplined = Some(number()),
            "--replay-dying" => a.replay_dying = Some(number()),
            "--replay-ranged" => a.replay_ranged = Some(number()),
            "--unbracketed" => {
                a.unbracketed = match value.as_str() {
                    "yes" => true,
                    "no" => false,
                    _ => bad(),
                }
            }
            "--usage" => {
                a.usage = match value.as_str() {
                    "any" => Usage::ANY,
                    "strict" => Usage::STRICT,
                    _ => bad(),
                }
            }
            "--policy" => {
                a.policy = match value.as_str() {
                    "tracked" => Policy::Tracked,
                    "always" => Policy::Always,
                    "uncached" => Policy::Uncached,
                    _ => bad(),
                }
            }
            "--mode" => {
                a.mode = Some(match value.as_str() {
                    "trap" => Mode::Trap,
                    "trap-huge" => Mode::TrapHuge,
                    "trust" => Mode::Trust,
                    _ => bad(),
                })
            }
            "--trap-cost" => {
                a.trap_cost_fatal = match value.as_str() {
                    "report" => false,
                    "fatal" => true,
                    _ => bad(),
                }
            }
            _ => {
                eprintln!("{USAGE}");
                std::process::exit(2)
            }
        }
    }
    a
}

fn mib(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / (1 << 20) as f64)
}

/// The name of a configuration, for rows and replays.
fn name(config: Config) -> String {
    let base = match (config.policy, config.mode) {
        (Policy::Always, Mode::Trust) => "always".to_string(),
        (Policy::Uncached, Mode::Trust) => "uncached".to_string(),
        (policy, mode) => format!("{}, {}", policy.name(), mode.name()),
    };
    let base = match config.start {
        run::Start::Fresh => base,
        run::Start::Pooled => format!("{base}, pooled"),
    };
    match config.mutation {
        Mutation::None => base,
        Mutation::PoolSkipsClean => format!("{base}, pool skips clean"),
        Mutation::IgnoreRevoke => format!("{base}, revokes ignored"),
        Mutation::RevokeAfterOps => format!("{base}, revoke after ops"),
        Mutation::RangesMissLastLine => format!("{base}, range one line short"),
        Mutation::FencesAtNextCall => format!("{base}, fences at next call"),
        Mutation::AssumeReach => format!("{base}, reach assumed"),
        Mutation::HugeBeyondGrant => format!("{base}, huge entry beyond its grant"),
        m => format!("{base}, {m:?}"),
    }
}

fn row(name: &str, s: &Summary) {
    row_with_oracle(name, s, &s.differs_from_oracle.to_string(), "");
}

fn row_with_oracle(name: &str, s: &Summary, oracle: &str, costlier: &str) {
    println!(
        "  {name:<32} {:>9} {:>6} {:>6} {:>10} {:>10} {:>9} {:>8} {:>8} {:>8}",
        s.sequences,
        s.stale_reads,
        s.lost_writes,
        mib(s.cost.clean_bytes),
        mib(s.cost.invalidate_bytes),
        oracle,
        s.cost.faults,
        s.cost.revokes,
        costlier
    );
}

/// Every row of a comparison; the first is the reference of the costlier
/// column.
fn rows(c: &Comparison, oracle: bool) {
    for (i, (&config, s)) in c.configs.iter().zip(&c.summaries).enumerate() {
        let differs = if oracle {
            s.differs_from_oracle.to_string()
        } else {
            "n/a".to_string()
        };
        let costlier = if i == 0 {
            "(ref)".to_string()
        } else {
            s.exceeds_reference.to_string()
        };
        row_with_oracle(&name(config), s, &differs, &costlier);
    }
}

fn header(title: &str) {
    println!("{title}");
    println!(
        "  {:<32} {:>9} {:>6} {:>6} {:>10} {:>10} {:>9} {:>8} {:>8} {:>8}",
        "policy",
        "sequences",
        "stale",
        "lost",
        "clean MiB",
        "inval MiB",
        "!= oracle",
        "faults",
        "revokes",
        "costlier"
    );
}

fn minimum_row(name: &str, cost: run::Cost) {
    println!(
        "  {:<32} {:>9} {:>6} {:>6} {:>10} {:>10}",
        name,
        "",
        "",
        "",
        mib(cost.clean_bytes),
        mib(cost.invalidate_bytes)
    );
}

fn minimum_rows(s: &Summary) {
    minimum_row("oracle (exporter knowledge)", s.oracle);
    minimum_row("ground truth (sees accesses)", s.ground_truth);
}

/// Records a failure if `s` read stale data or lost a write, or (if
/// `must_equal_oracle`) cost other than the exporter oracle.
fn check(failed: &mut Vec<String>, what: &str, s: &Summary, must_equal_oracle: bool) {
    if !s.safe() || (must_equal_oracle && s.differs_from_oracle > 0) {
        let (id, why) = s
            .first_failure
            .clone()
            .unwrap_or((0, "cost differs from the oracle".into()));
        failed.push(format!("{what}: first failure {id:#x}: {why}"));
    }
}

/// For the system heap's policy: every violation is a coherent snoop
/// served by a stale line (printed), or it is a failure.
fn snoops_only(failed: &mut Vec<String>, what: &str, s: &Summary) {
    if s.safe_but_snoops() {
        if s.stale_snoops > 0 {
            println!(
                "{what}: {} coherent reads served by stale CPU lines (the system heap does not invalidate for coherent importers), nothing else",
                s.stale_snoops
            );
        }
    } else {
        check(failed, what, s, false);
    }
}

/// [`check`] for safety only, with the command that replays the failure.
fn must_be_safe(failed: &mut Vec<String>, what: &str, s: &Summary, replay: String) {
    if !s.safe() {
        check(failed, what, s, false);
        failed.push(format!("  replay: {replay}"));
    }
}

/// Prints the trace of `traced` on `scenario`, then the outcome of every
/// configuration of `configs`.
fn replay_scenario(scenario: &Scenario, traced: Config, configs: &[Config]) {
    println!("devices (coherent?): {:?}", scenario.coherent);
    println!("devices (fenced?): {:?}", scenario.fenced);
    println!("devices (bounce?): {:?}", scenario.bounce);
    println!("trace ({}):", name(traced));
    let (_, trace) = run::trace(scenario, traced);
    for line in trace {
        println!("{line}");
    }
    for &config in configs {
        println!("{}: {:?}", name(config), run::run_with(scenario, config));
    }
}

/// Mixed into the seed of the range campaign, so that its sequences differ
/// from the others'.
const RANGES_SEED: u64 = 0x4a4e_6e5e;

/// Mixed into the seed of the campaign of huge user entries.
const HUGE_SEED: u64 = 0x2a1b_9e00;

/// Mixed into the seed of the campaign of dying processes.
const DYING_SEED: u64 = 0xd1e5_0f0c;

fn main() {
    let a = parse();
    let traced = |default: Mode| Config::new(a.policy, a.mode.unwrap_or(default));
    let disciplined = [Config::TRACKED_TRUST, Config::TRACKED_TRAP];
    let undisciplined = [Config::TRACKED_TRAP, Config::TRACKED_TRUST, Config::ALWAYS];
    if let Some(seed) = a.replay {
        let scenario = script::random(&mut Rng::new(seed), a.length, a.usage);
        replay_scenario(&scenario, traced(Mode::Trust), &disciplined);
        println!("oracle: {:?}", oracle::exporter_minimum(&scenario));
        return;
    }
    if let Some(seed) = a.replay_ranged {
        let scenario = script::random_ranged(&mut Rng::new(seed), a.length, a.usage, a.unbracketed);
        replay_scenario(&scenario, traced(Mode::Trust), &disciplined);
        println!("oracle: {:?}", oracle::exporter_minimum(&scenario));
        return;
    }
    if let Some(seed) = a.replay_bounce {
        let scenario = script::random_bouncing(&mut Rng::new(seed), a.length, a.usage);
        replay_scenario(&scenario, traced(Mode::Trust), &disciplined);
        return;
    }
    if let Some(seed) = a.replay_undisciplined {
        let scenario = script::random_undisciplined(&mut Rng::new(seed), a.length, a.usage, false);
        replay_scenario(&scenario, traced(Mode::Trap), &undisciplined);
        println!(
            "ground truth: {:?}",
            oracle::ground_truth_minimum(&scenario)
        );
        return;
    }
    if let Some(seed) = a.replay_undisciplined_bounce {
        let scenario = script::random_undisciplined(&mut Rng::new(seed), a.length, a.usage, true);
        replay_scenario(&scenario, traced(Mode::Trap), &undisciplined[..2]);
        return;
    }
    if let Some(seed) = a.replay_uncached_undisciplined {
        let scenario =
            script::random_undisciplined_uncached(&mut Rng::new(seed), a.length, a.usage);
        replay_scenario(&scenario, Config::UNCACHED, &[Config::UNCACHED]);
        return;
    }
    if let Some(seed) = a.replay_dying {
        let scenario = script::random_dying(&mut Rng::new(seed), a.length, a.usage);
        replay_scenario(&scenario, traced(Mode::Trap), &[Config::TRACKED_TRAP]);
        return;
    }
    let mut failed = Vec::new();
    let mut gaps = Vec::new();
    header(&format!(
        "cache model: {} random sequences of ~{} steps (seed {:#x}), buffer of 3 lines x 2 words\n  (costlier: sequences on which the row costs more bytes than the first row of its group)",
        a.sequences, a.length, a.seed
    ));
    let any = campaign::random_compared(a.seed, a.sequences, a.length, Usage::ANY, &disciplined);
    let strict = campaign::random_compared(
        a.seed,
        a.sequences,
        a.length,
        Usage::STRICT,
        &[Config::TRACKED_TRUST, Config::TRACKED_TRAP, Config::ALWAYS],
    );
    let (tracked, tracked_trap) = (
        any.get(Config::TRACKED_TRUST),
        any.get(Config::TRACKED_TRAP),
    );
    let tracked_strict = strict.get(Config::TRACKED_TRUST);
    let trap_strict = strict.get(Config::TRACKED_TRAP);
    let always = strict.get(Config::ALWAYS);
    println!("  any usage the core accepts:");
    rows(&any, true);
    minimum_rows(tracked);
    println!("  strict usage (the contract the system heap relies on):");
    rows(&strict, true);
    minimum_rows(always);
    check(&mut failed, "random tracked", tracked, true);
    check(
        &mut failed,
        "random tracked, strict usage",
        tracked_strict,
        true,
    );
    // The system heap never invalidates for a coherent importer (nor at a
    // fence): its snoops may be served by stale lines. Anything else must
    // be safe under strict usage.
    snoops_only(&mut failed, "random always, strict usage", always);
    check(&mut failed, "random tracked with trap", tracked_trap, false);
    check(
        &mut failed,
        "random tracked with trap, strict usage",
        trap_strict,
        false,
    );

    println!();
    header(&format!(
        "exhaustive: every exporter-event sequence of up to {} events, 2 devices (both non-coherent, one coherent, or one fenced), 2 fixed + 3 random adversaries",
        a.depth
    ));
    let ex = campaign::exhaustive_compared(a.depth, 3, Usage::ANY, &disciplined);
    let ex_always = campaign::exhaustive(a.depth, 3, Policy::Always, Usage::STRICT, Mutation::None);
    let (ex_tracked, ex_trap) = (ex.get(Config::TRACKED_TRUST), ex.get(Config::TRACKED_TRAP));
    rows(&ex, true);
    minimum_rows(ex_tracked);
    row("always (strict usage)", &ex_always);
    check(&mut failed, "exhaustive tracked", ex_tracked, true);
    check(&mut failed, "exhaustive tracked with trap", ex_trap, false);
    check(&mut failed, "exhaustive always", &ex_always, false);

    println!();
    header(&format!(
        "bouncing devices: {} random sequences of ~{} steps (seed {:#x}), {} % of non-coherent devices bounce, any usage",
        a.sequences,
        a.length,
        a.bounce_seed,
        script::BOUNCE_PERCENT
    ));
    let bouncing = campaign::bouncing_compared(
        a.bounce_seed,
        a.sequences,
        a.length,
        Usage::ANY,
        &disciplined,
    );
    rows(&bouncing, false);
    check(
        &mut failed,
        "random tracked, bouncing devices",
        bouncing.get(Config::TRACKED_TRUST),
        false,
    );
    check(
        &mut failed,
        "random tracked with trap, bouncing devices",
        bouncing.get(Config::TRACKED_TRAP),
        false,
    );

    // The DMA32 heaps: a 32-bit device maps a buffer below 4 GiB directly,
    // so there it is one of the direct devices above (the random
    // campaigns). What is new is the judgement that it reaches the buffer:
    // taken for a buffer it does not reach, its mapping bounces with
    // `DMA_ATTR_SKIP_CPU_SYNC`, which must be caught.
    println!();
    header(&format!(
        "32-bit devices taken to reach a buffer above 4 GiB (the DMA32 heaps' judgement, wrong): the {} bouncing sequences above (seed {:#x})",
        a.sequences, a.bounce_seed
    ));
    let reach = Config::TRACKED_TRUST.with(Mutation::AssumeReach);
    let assumed =
        campaign::bouncing_compared(a.bounce_seed, a.sequences, a.length, Usage::ANY, &[reach]);
    rows(&assumed, false);
    if assumed.get(reach).safe() {
        failed.push(
            "bouncing devices: mapping a buffer they do not reach as if they did goes unnoticed"
                .into(),
        );
    }

    // Disciplined user space pays nothing for the trap. Under misuse the
    // faults may reveal CPU writes that no bracket declared (a write in a
    // bracket that began as a read): those cost what they need.
    if trap_strict.exceeds_reference > 0 {
        let (id, why) = trap_strict.first_excess.clone().unwrap_or_default();
        gaps.push(format!(
            "disciplined (strict) sequences: trap costs more than trust on {} of {} (first {id}: {why}; cache-model --replay {id} --usage strict --mode trap)",
            trap_strict.exceeds_reference, trap_strict.sequences
        ));
    }

    println!();
    header(&format!(
        "user space that skips SYNC: {} random sequences of ~{} steps (seed {:#x}), {} % of CPU accesses unbracketed where the contract allows",
        a.sequences,
        a.length,
        a.undisciplined_seed,
        script::UNBRACKETED_PERCENT
    ));
    let undisciplined_strict = campaign::undisciplined(
        a.undisciplined_seed,
        a.sequences,
        a.length,
        Usage::STRICT,
        false,
        &[
            Config::ALWAYS,
            Config::TRACKED_TRAP,
            Config::TRACKED_TRUST,
            Config::TRACKED_TRAP.with(Mutation::IgnoreRevoke),
            Config::TRACKED_TRAP.with(Mutation::RevokeAfterOps),
        ],
    );
    let undisciplined_any = campaign::undisciplined(
        a.undisciplined_seed,
        a.sequences,
        a.length,
        Usage::ANY,
        false,
        &[Config::TRACKED_TRAP, Config::TRACKED_TRUST],
    );
    let undisciplined_bouncing = campaign::undisciplined(
        a.undisciplined_seed,
        a.sequences,
        a.length,
        Usage::ANY,
        true,
        &[Config::TRACKED_TRAP, Config::TRACKED_TRUST],
    );
    println!("  strict brackets (the usage the system heap is correct for):");
    rows(&undisciplined_strict, false);
    minimum_row(
        "ground truth (sees accesses)",
        undisciplined_strict.summaries[0].ground_truth,
    );
    println!("  any usage the core accepts:");
    rows(&undisciplined_any, false);
    minimum_row(
        "ground truth (sees accesses)",
        undisciplined_any.summaries[0].ground_truth,
    );
    println!(
        "  any usage, {} % of non-coherent devices bounce:",
        script::BOUNCE_PERCENT
    );
    rows(&undisciplined_bouncing, false);

    let u_always = undisciplined_strict.get(Config::ALWAYS);
    let u_trap = undisciplined_strict.get(Config::TRACKED_TRAP);
    let replay = |usage: &str, bounce: bool, s: &Summary| {
        let id = s.first_failure.as_ref().map_or(0, |f| f.0);
        format!(
            "cache-model --replay-undisciplined{} {id} --usage {usage}",
            if bounce { "-bounce" } else { "" }
        )
    };
    must_be_safe(
        &mut failed,
        "skipping SYNC, tracked with trap, strict brackets",
        u_trap,
        replay("strict", false, u_trap),
    );
    snoops_only(
        &mut failed,
        "skipping SYNC, always, strict brackets",
        u_always,
    );
    let s = undisciplined_any.get(Config::TRACKED_TRAP);
    must_be_safe(
        &mut failed,
        "skipping SYNC, tracked with trap, any usage",
        s,
        replay("any", false, s),
    );
    let s = undisciplined_bouncing.get(Config::TRACKED_TRAP);
    must_be_safe(
        &mut failed,
        "skipping SYNC, tracked with trap, bouncing devices",
        s,
        replay("any", true, s),
    );
    // The model must see what trapping protects against.
    for (what, s) in [
        (
            "skipping SYNC, tracked with trust",
            undisciplined_strict.get(Config::TRACKED_TRUST),
        ),
        (
            "skipping SYNC, tracked with trap, revokes ignored",
            undisciplined_strict.get(Config::TRACKED_TRAP.with(Mutation::IgnoreRevoke)),
        ),
    ] {
        if s.safe() {
            failed.push(format!(
                "{what}: no sequence failed, the model sees nothing"
            ));
        }
    }
    if u_trap.cost.total() > u_always.cost.total() {
        failed.push(format!(
            "skipping SYNC: tracked with trap costs {} bytes, always {}",
            u_trap.cost.total(),
            u_always.cost.total()
        ));
    }

    // Buffers from the page pool start clean (zeroed, then cleaned by the
    // pool's worker): the same sequences must stay safe and never cost
    // more than on fresh pages, and a pool that skipped the clean while
    // telling the rules it did must be caught.
    println!();
    header(&format!(
        "pooled buffers (zeroed and cleaned by the page pool): the exhaustive set (depth {}) and {} random sequences, any usage; costlier: than on fresh pages",
        a.depth, a.sequences
    ));
    let pooled_configs = [
        Config::TRACKED_TRUST,
        Config::TRACKED_TRUST.pooled(),
        Config::TRACKED_TRAP.pooled(),
        Config::TRACKED_TRUST
            .pooled()
            .with(Mutation::PoolSkipsClean),
    ];
    let pooled_ex = campaign::exhaustive_compared(a.depth, 3, Usage::ANY, &pooled_configs);
    let pooled_random =
        campaign::random_compared(a.seed, a.sequences, a.length, Usage::ANY, &pooled_configs);
    for (what, c) in [("exhaustive", &pooled_ex), ("random", &pooled_random)] {
        println!("  {what}:");
        rows(c, false);
        for config in &pooled_configs[1..3] {
            let s = c.get(*config);
            if !s.safe() {
                failed.push(format!(
                    "pooled buffers, {what}, {}: unsafe ({:?})",
                    name(*config),
                    s.first_failure
                ));
            }
        }
        let pooled = c.get(Config::TRACKED_TRUST.pooled());
        if pooled.exceeds_reference > 0 {
            failed.push(format!(
                "pooled buffers, {what}: costlier than fresh pages on {} sequences ({:?})",
                pooled.exceeds_reference, pooled.first_excess
            ));
        }
        if c.get(pooled_configs[3]).safe() {
            failed.push(format!(
                "pooled buffers, {what}: a pool that skips the clean goes unnoticed"
            ));
        }
    }

    // Range brackets mixed with whole-buffer ones: safe, and (bracketed)
    // at the per-line oracle minimum; a range told one line short must be
    // caught.
    println!();
    header(&format!(
        "range brackets (the heap's range SYNC) mixed with whole-buffer ones: {} random sequences of ~{} steps (seed {:#x}), {} % of brackets cover a range; oracle: per cache line",
        a.sequences,
        a.length,
        a.seed ^ RANGES_SEED,
        script::RANGE_PERCENT
    ));
    let ranged_configs = [
        Config::TRACKED_TRUST,
        Config::TRACKED_TRAP,
        Config::TRACKED_TRUST.with(Mutation::RangesMissLastLine),
    ];
    let mut ranged_sequences = 0;
    for (what, usage, unbracketed) in [
        ("strict brackets", Usage::STRICT, false),
        ("any usage the core accepts", Usage::ANY, false),
        ("any usage, user space that skips SYNC", Usage::ANY, true),
    ] {
        println!("  {what}:");
        let c = campaign::ranged(
            a.seed ^ RANGES_SEED,
            a.sequences,
            a.length,
            usage,
            unbracketed,
            &ranged_configs,
        );
        if unbracketed {
            // Trusting user space that skips SYNC is unsafe anyway.
            rows(&c, false);
            let trap = c.get(Config::TRACKED_TRAP);
            check(&mut failed, &format!("ranges, {what}, trap"), trap, false);
            minimum_row("ground truth (sees accesses)", trap.ground_truth);
        } else {
            rows(&c, true);
            let trust = c.get(Config::TRACKED_TRUST);
            check(&mut failed, &format!("ranges, {what}, trust"), trust, true);
            check(
                &mut failed,
                &format!("ranges, {what}, trap"),
                c.get(Config::TRACKED_TRAP),
                false,
            );
            minimum_rows(trust);
            if let Some((id, why)) = &c.get(Config::TRACKED_TRAP).first_excess {
                println!(
                    "  trap costlier than trust, first: cache-model --replay-ranged {id:#x} --usage {} --mode trap: {why}",
                    if usage == Usage::STRICT { "strict" } else { "any" }
                );
            }
            if c.get(ranged_configs[2]).safe() {
                failed.push(format!(
                    "ranges, {what}: a range told one line short goes unnoticed"
                ));
            }
        }
        ranged_sequences += c.summaries[0].sequences;
    }

    // Huge user entries: faults that map a 2 MiB chunk with one entry are
    // as safe as PTEs and cost the same maintenance; one mapped beyond its
    // grant must be caught.
    println!();
    header(&format!(
        "huge user entries (trap; lines 0..{} are a 2 MiB chunk a fault maps with one entry when granted whole): {} random sequences of ~{} steps with range brackets (seed {:#x})",
        run::HUGE_LINES,
        a.sequences,
        a.length,
        a.seed ^ HUGE_SEED
    ));
    let huge = Config::new(Policy::Tracked, Mode::TrapHuge);
    let huge_configs = [
        Config::TRACKED_TRAP,
        huge,
        huge.with(Mutation::HugeBeyondGrant),
    ];
    let mut huge_sequences = 0;
    let mut beyond_caught = false;
    for (what, usage, unbracketed) in [
        ("strict brackets", Usage::STRICT, false),
        ("any usage, user space that skips SYNC", Usage::ANY, true),
    ] {
        println!("  {what}:");
        let c = campaign::ranged(
            a.seed ^ HUGE_SEED,
            a.sequences,
            a.length,
            usage,
            unbracketed,
            &huge_configs,
        );
        rows(&c, false);
        let (trap, with_huge) = (c.get(Config::TRACKED_TRAP), c.get(huge));
        let id = with_huge.first_failure.as_ref().map_or(0, |f| f.0);
        must_be_safe(
            &mut failed,
            &format!("huge entries, {what}"),
            with_huge,
            format!(
                "cache-model --replay-ranged {id:#x} --unbracketed {} --usage {} --mode trap-huge",
                if unbracketed { "yes" } else { "no" },
                if usage == Usage::STRICT {
                    "strict"
                } else {
                    "any"
                }
            ),
        );
        if with_huge.cost.bytes() != trap.cost.bytes() {
            failed.push(format!(
                "huge entries, {what}: maintenance {:?} differs from PTEs' {:?}",
                with_huge.cost.bytes(),
                trap.cost.bytes()
            ));
        }
        beyond_caught |= !c.get(huge_configs[2]).safe();
        huge_sequences += c.summaries[0].sequences;
    }
    if !beyond_caught {
        failed.push("huge entries: one mapped beyond its grant goes unnoticed".into());
    }

    // Uncached buffers (write-combined CPU mappings): safe with coherent,
    // non-coherent and bouncing importers, ranges included; maintenance
    // only for coherent importers and bounce copies; dropping those
    // invalidates must be caught.
    println!();
    header(&format!(
        "uncached buffers (write-combined CPU mappings; fresh chunks flushed at allocation, pooled ones taken as the pool cleaned them): {} random sequences each, any usage",
        a.sequences
    ));
    let uncached_configs = [
        Config::UNCACHED,
        Config::UNCACHED.with(Mutation::DropInvalidates),
        Config::UNCACHED.pooled(),
        Config::UNCACHED.pooled().with(Mutation::PoolSkipsClean),
    ];
    let mut uncached_sequences = 0;
    let sets: [(&str, Comparison); 4] = [
        (
            "random",
            campaign::random_compared(a.seed, a.sequences, a.length, Usage::ANY, &uncached_configs),
        ),
        (
            "with range brackets",
            campaign::ranged(
                a.seed ^ RANGES_SEED,
                a.sequences,
                a.length,
                Usage::ANY,
                false,
                &uncached_configs,
            ),
        ),
        (
            "40 % of non-coherent devices bounce",
            campaign::bouncing_compared(
                a.bounce_seed,
                a.sequences,
                a.length,
                Usage::ANY,
                &uncached_configs,
            ),
        ),
        (
            "user space skips SYNC, 40 % of non-coherent devices bounce",
            campaign::generated(
                a.undisciplined_seed,
                a.sequences,
                a.length,
                Usage::ANY,
                script::random_undisciplined_uncached,
                Oracles::None,
                &uncached_configs,
            ),
        ),
    ];
    for (i, (what, c)) in sets.iter().enumerate() {
        println!("  {what}:");
        rows(c, false);
        let s = c.get(Config::UNCACHED);
        check(&mut failed, &format!("uncached, {what}"), s, false);
        let pooled = c.get(Config::UNCACHED.pooled());
        check(
            &mut failed,
            &format!("uncached, pooled, {what}"),
            pooled,
            false,
        );
        if pooled.cost != s.cost {
            failed.push(format!(
                "uncached, pooled, {what}: maintenance differs from fresh chunks'"
            ));
        }
        if i == 3 && !s.safe() {
            let id = s.first_failure.as_ref().map_or(0, |f| f.0);
            failed.push(format!(
                "  replay: cache-model --replay-uncached-undisciplined {id:#x}"
            ));
        }
        uncached_sequences += c.summaries[0].sequences;
    }
    if sets.iter().any(|(_, c)| c.get(uncached_configs[1]).safe()) {
        failed.push("uncached: dropping its invalidates goes unnoticed".into());
    }
    if sets.iter().all(|(_, c)| c.get(uncached_configs[3]).safe()) {
        failed.push("uncached: pooled chunks that were not cleaned go unnoticed".into());
    }

    // Fence signals take effect where they happen (the exporter applies
    // them from the fence callback); delivered only at the next exporter
    // call instead, a snoop or a read through existing user entries
    // between the two finds stale lines, which the model must see.
    println!();
    header(&format!(
        "fence signals applied at once, against delivered at the next exporter call: {} random sequences each (seeds {:#x}, {:#x})",
        a.sequences, a.seed, a.undisciplined_seed
    ));
    let late = Config::TRACKED_TRAP.with(Mutation::FencesAtNextCall);
    let late_any = campaign::random_compared(
        a.seed,
        a.sequences,
        a.length,
        Usage::ANY,
        &[Config::TRACKED_TRAP, late],
    );
    let late_undisciplined = campaign::generated(
        a.undisciplined_seed,
        a.sequences,
        a.length,
        Usage::ANY,
        script::random_reading_beside_fenced_writers,
        Oracles::GroundTruth,
        &[Config::TRACKED_TRAP, late],
    );
    println!("  any usage the core accepts:");
    rows(&late_any, false);
    println!("  user space that skips SYNC, and reads beside fenced writers once they signalled:");
    rows(&late_undisciplined, false);
    for (what, c) in [
        ("any usage", &late_any),
        ("skipping SYNC beside fenced writers", &late_undisciplined),
    ] {
        check(
            &mut failed,
            &format!("fences at once, {what}"),
            c.get(Config::TRACKED_TRAP),
            false,
        );
    }
    if late_any.get(late).safe() || late_undisciplined.get(late).safe() {
        failed.push("fence signals delivered late go unnoticed".into());
    }

    // Processes that die inside their brackets: their whole-buffer
    // brackets stay open for ever, their range brackets are ended by the
    // release of their control file. Other processes, trapped, must still
    // read what devices wrote since.
    println!();
    header(&format!(
        "processes that die inside their brackets: {} random sequences of ~{} steps (seed {:#x}), {} % of bracket ends are deaths, ranges and user space that skips SYNC mixed in, any usage",
        a.sequences,
        a.length,
        a.undisciplined_seed ^ DYING_SEED,
        script::DYING_PERCENT
    ));
    let dying_configs = [
        Config::TRACKED_TRAP,
        Config::TRACKED_TRAP.with(Mutation::DropInvalidates),
    ];
    let dying = campaign::generated(
        a.undisciplined_seed ^ DYING_SEED,
        a.sequences,
        a.length,
        Usage::ANY,
        script::random_dying,
        Oracles::GroundTruth,
        &dying_configs,
    );
    rows(&dying, false);
    minimum_row(
        "ground truth (sees accesses)",
        dying.summaries[0].ground_truth,
    );
    let s = dying.get(Config::TRACKED_TRAP);
    let id = s.first_failure.as_ref().map_or(0, |f| f.0);
    must_be_safe(
        &mut failed,
        "processes that die inside their brackets, tracked with trap",
        s,
        format!("cache-model --replay-dying {id:#x}"),
    );
    if dying.get(dying_configs[1]).safe() {
        failed.push(
            "processes that die inside their brackets: dropping the invalidates goes unnoticed"
                .into(),
        );
    }

    let saved = |ours: u64, theirs: u64| 100.0 * (1.0 - ours as f64 / theirs.max(1) as f64);
    println!();
    println!(
        "tracked does {:.1} % less maintenance than always on the same random sequences",
        saved(tracked_strict.cost.total(), always.cost.total())
    );
    println!(
        "with user space that skips SYNC, tracked with trap does {:.1} % less than always (strict brackets); it costs more on {} of {} sequences{}",
        saved(u_trap.cost.total(), u_always.cost.total()),
        u_trap.exceeds_reference,
        u_trap.sequences,
        u_trap.first_excess.as_ref().map_or(String::new(), |(id, why)| format!(
            " (first: cache-model --replay-undisciplined {id} --usage strict: {why})"
        ))
    );
    println!(
        "trap vs trust on disciplined sequences, costlier: {} strict, {} any usage, {} exhaustive, {} bouncing",
        trap_strict.exceeds_reference,
        tracked_trap.exceeds_reference,
        ex_trap.exceeds_reference,
        bouncing.get(Config::TRACKED_TRAP).exceeds_reference
    );
    let sequences = any.summaries[0].sequences * 2
        + ex_tracked.sequences
        + ex_always.sequences
        + bouncing.summaries[0].sequences
        + undisciplined_strict.summaries[0].sequences * 2
        + undisciplined_bouncing.summaries[0].sequences
        + ranged_sequences
        + huge_sequences
        + uncached_sequences
        + dying.summaries[0].sequences
        + late_any.summaries[0].sequences
        + late_undisciplined.summaries[0].sequences;
    for g in &gaps {
        println!("RULE GAP {g}");
    }
    if a.trap_cost_fatal {
        failed.append(&mut gaps);
    }
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
