use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tokenvend::cli::Cli::parse().run().await
}
