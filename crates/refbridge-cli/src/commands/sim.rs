use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use refbridge_accloud_sim::SimConfig;

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub listen: String,
    /// A TOML or JSON file with the simulator's configuration (credentials, seed data,
    /// faults, rng seed); the built-in defaults otherwise.
    #[arg(long)]
    pub sim_config: Option<PathBuf>,
}

/// Serves the ACCloud simulator until Ctrl-C.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let config: SimConfig = match &args.sim_config {
        None => SimConfig::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if path.extension().is_some_and(|e| e == "json") {
                serde_json::from_str(&text).context("simulator configuration")?
            } else {
                toml_from_str(&text)?
            }
        }
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("ACCloud simulator on http://{}", listener.local_addr()?);
    refbridge_accloud_sim::serve(listener, config, crate::shutdown_signal())
        .await
        .context("the simulator stopped")?;
    Ok(())
}

fn toml_from_str(text: &str) -> anyhow::Result<SimConfig> {
    use figment::Figment;
    use figment::providers::{Format, Toml};
    Figment::from(Toml::string(text))
        .extract()
        .context("simulator configuration")
}
