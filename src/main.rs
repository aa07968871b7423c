use std::path::PathBuf;

use clap::{Parser, Subcommand};
use customer_knowledge::{config::Settings, datagen, startup, telemetry};

// glibc's allocator took a seventh of the server's CPU under load (malloc,
// free and their consolidation in a profile of GetCustomer); mimalloc's
// thread-local free lists make the many small allocations of a call cheap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Customer Knowledge Service.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// A TOML configuration file (also CK_CONFIG).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve gRPC (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Recompute RFM scores, pyramid tiers, churn risk and relationship
    /// types of every customer (the nightly job), then exit.
    RecomputeSegments {
        /// The end (exclusive) of the window, RFC 3339 (default: now).
        #[arg(long)]
        as_of: Option<chrono::DateTime<chrono::Utc>>,
        /// The window's length in months, 1 to 60 (default: insights.window_months).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=60))]
        window_months: Option<u32>,
    },
    /// Build a deterministic synthetic bank from a seed and load it into a
    /// running service through its gRPC API (customers, interactions,
    /// knowledge items); rerunning with the same seed adds nothing.
    GenerateData(datagen::load::Args),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let command = match cli.command.unwrap_or(Command::Serve) {
        // A client of a running service: no settings, no database.
        Command::GenerateData(args) => {
            return match datagen::load::run(args).await {
                Ok(_) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("customer-knowledge generate-data: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        command => command,
    };
    let loaded = match command {
        Command::Serve => Settings::load(cli.config),
        Command::Migrate | Command::RecomputeSegments { .. } => {
            Settings::load_for_migrate(cli.config)
        }
        Command::GenerateData(_) => return std::process::ExitCode::SUCCESS,
    };
    let settings = match loaded {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("customer-knowledge: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let telemetry = match telemetry::init(&settings.log, &settings.telemetry) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("customer-knowledge: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let flush_budget = settings.telemetry_flush_budget();
    let result = match command {
        Command::Serve => startup::serve(settings).await,
        Command::Migrate => startup::migrate(settings).await,
        Command::RecomputeSegments {
            as_of,
            window_months,
        } => startup::recompute_segments(settings, as_of, window_months).await,
        Command::GenerateData(_) => Ok(()),
    };
    // After the drain: the spans of the last calls leave before the exit.
    telemetry.shutdown(flush_budget).await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "customer-knowledge stopped");
            eprintln!("customer-knowledge: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
