//! The fault suite (RELIABILITY.md): the real `customer-knowledge serve`
//! binary as a child process, real Postgres on a private cluster, real
//! tonic clients, and faults injected from outside: kill -9, Postgres
//! restarts, a table lock, a stalled network, overload, SIGTERM.
//!
//! ```text
//! cargo test --test fault                 # the fast scenarios (CI runs these)
//! cargo test --release --test fault -- --all
//! cargo test --test fault -- --list       # names; other words filter by name
//! ```
//!
//! Each scenario prints `PASS <name>` or `FAIL <name>` and its figures; the
//! exit status is non-zero when one failed. Everything listens on 127.0.0.1;
//! service processes run in their own process groups and are killed on every
//! way out (the end, a failure, a panic, Ctrl-C, or the suite being killed).

mod appends;
mod drain;
mod harness;
#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
mod kill;
mod lock;
mod overload;
mod proxy;
mod restart;
mod stall;

use std::{
    future::Future,
    path::PathBuf,
    pin::Pin,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use harness::{Cluster, Report, Scn, stop_everything};

/// The whole run's time bound: past it, the scenarios not yet run fail
/// without running. Each scenario also has its own limit.
const BUDGET_FAST: Duration = Duration::from_secs(300);
const BUDGET_ALL: Duration = Duration::from_secs(570);

/// Set on Ctrl-C / SIGTERM: the handler stops everything and exits, and no
/// further result is printed.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

type Run = fn(Scn) -> Pin<Box<dyn Future<Output = anyhow::Result<Report>> + Send>>;

struct Scenario {
    name: &'static str,
    /// Part of the fast set that `cargo test` runs; the others only with
    /// `--all`.
    fast: bool,
    /// The scenario fails when it runs longer than this.
    limit: Duration,
    run: Run,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "sigkill-appends-retry",
        fast: true,
        limit: Duration::from_secs(150),
        run: |scn| Box::pin(kill::run(scn)),
    },
    Scenario {
        name: "pg-restart-fast",
        fast: true,
        limit: Duration::from_secs(150),
        run: |scn| Box::pin(restart::run(scn, "fast")),
    },
    Scenario {
        name: "pg-restart-immediate",
        fast: false,
        limit: Duration::from_secs(150),
        run: |scn| Box::pin(restart::run(scn, "immediate")),
    },
    Scenario {
        name: "table-lock-deadlines",
        fast: true,
        limit: Duration::from_secs(120),
        run: |scn| Box::pin(lock::run(scn)),
    },
    Scenario {
        name: "stalled-db-proxy",
        fast: true,
        limit: Duration::from_secs(150),
        run: |scn| Box::pin(stall::run(scn)),
    },
    Scenario {
        name: "overload-20x",
        fast: true,
        limit: Duration::from_secs(180),
        run: |scn| Box::pin(overload::run(scn)),
    },
    Scenario {
        name: "sigterm-drain-watch",
        fast: true,
        limit: Duration::from_secs(120),
        run: |scn| Box::pin(drain::run(scn)),
    },
];

#[derive(Default)]
struct Args {
    all: bool,
    list: bool,
    filters: Vec<String>,
    skips: Vec<String>,
}

/// `--all`, `--list` and name filters; libtest's other flags (which `cargo
/// test` may pass to every test binary) are accepted and ignored.
fn parse_args() -> Args {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--all" => args.all = true,
            "--list" => args.list = true,
            "--skip" => args.skips.extend(it.next()),
            "--test-threads" | "--format" | "--color" | "--logfile" | "-Z" | "--shuffle-seed"
            | "--report-time" => {
                it.next();
            }
            a if a.starts_with('-') => {}
            filter => args.filters.push(filter.to_string()),
        }
    }
    args
}

fn main() -> ExitCode {
    let args = parse_args();
    let selected: Vec<&Scenario> = SCENARIOS
        .iter()
        .filter(|s| args.all || s.fast || !args.filters.is_empty())
        .filter(|s| args.filters.is_empty() || args.filters.iter().any(|f| s.name.contains(f)))
        .filter(|s| !args.skips.iter().any(|f| s.name.contains(f)))
        .collect();
    if args.list {
        for s in &selected {
            println!("{}: test", s.name);
        }
        return ExitCode::SUCCESS;
    }
    if selected.is_empty() {
        println!("fault: no scenario matches {:?}", args.filters);
        return ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let code = runtime.block_on(run(selected, args.all));
    stop_everything();
    code
}

async fn run(selected: Vec<&'static Scenario>, all: bool) -> ExitCode {
    tokio::spawn(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        INTERRUPTED.store(true, Ordering::SeqCst);
        eprintln!("fault: interrupted; stopping every process the suite started");
        stop_everything();
        std::process::exit(130);
    });

    let suite_started = Instant::now();
    let budget = if all { BUDGET_ALL } else { BUDGET_FAST };
    let cluster = match Cluster::prepare().await {
        Ok(cluster) => Arc::new(cluster),
        Err(e) => {
            println!("FAIL fault-suite-setup\n      {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fault");
    // Only the latest run's logs are kept.
    let _ = std::fs::remove_dir_all(&logs);
    let logs = logs.join(stamp.to_string());
    println!(
        "fault: {} scenario(s), {}; Postgres {} (data {}{}); service logs under {}",
        selected.len(),
        if all {
            "all"
        } else {
            "the fast part (`-- --all` runs every one)"
        },
        cluster.base,
        cluster.data_dir().display(),
        if cluster.stop_at_end {
            ", stopped at the end"
        } else {
            ""
        },
        logs.display()
    );

    let mut failed = Vec::new();
    for scenario in &selected {
        let started = Instant::now();
        let scn = Scn::new(cluster.clone(), logs.join(scenario.name), all);
        let limit = scenario
            .limit
            .min(budget.saturating_sub(suite_started.elapsed()));
        let outcome = match cluster.ensure_up().await {
            Err(e) => Err(format!("the Postgres cluster is down: {e:#}")),
            Ok(()) if limit < Duration::from_secs(10) => Err(format!(
                "not run: the suite's time budget ({} s) is spent",
                budget.as_secs()
            )),
            Ok(()) => {
                let mut task = tokio::spawn((scenario.run)(scn));
                match tokio::time::timeout(limit, &mut task).await {
                    Ok(Ok(Ok(report))) => Ok(report),
                    Ok(Ok(Err(e))) => Err(format!("{e:#}")),
                    Ok(Err(join)) => Err(format!("panicked: {}", panic_text(join))),
                    Err(_) => {
                        task.abort();
                        let _ = task.await;
                        Err(format!("did not finish within {} s", limit.as_secs()))
                    }
                }
            }
        };
        if INTERRUPTED.load(Ordering::SeqCst) {
            // The signal handler is stopping everything and exits.
            std::future::pending::<()>().await;
        }
        let took = started.elapsed().as_secs_f64();
        let pass = matches!(&outcome, Ok(r) if r.failures.is_empty());
        println!(
            "{} {} ({took:.1} s)",
            if pass { "PASS" } else { "FAIL" },
            scenario.name
        );
        match outcome {
            Ok(report) => {
                for (name, value) in &report.figures {
                    println!("      {name}: {value}");
                }
                for failure in &report.failures {
                    println!("      FAILED: {failure}");
                }
            }
            Err(e) => println!("      FAILED: {e}"),
        }
        if !pass {
            println!("      logs: {}", logs.join(scenario.name).display());
            failed.push(scenario.name);
        }
    }
    println!(
        "fault: {} passed, {} failed{} in {:.0} s",
        selected.len() - failed.len(),
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(" ({})", failed.join(", "))
        },
        suite_started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn panic_text(join: tokio::task::JoinError) -> String {
    match join.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".into()),
        Err(e) => e.to_string(),
    }
}
