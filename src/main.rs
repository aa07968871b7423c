use std::path::PathBuf;

use clap::{Parser, Subcommand};
use customer_knowledge::{config::Settings, datagen, startup, telemetry};

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
    /// Build a deterministic synthetic bank from a seed and load it into a
    /// running service through its gRPC API (customers, interactions,
    /// knowledge items); rerunning with the same seed adds nothing.
    GenerateData(datagen::load::Args),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    let loaded = match command {
        Command::Serve => Settings::load(cli.config),
        Command::Migrate => Settings::load_for_migrate(cli.config),
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
        Command::GenerateData(_) => unreachable!("returned above"),
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
