use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    tokenvend::cli::Cli::parse().run().await
}
