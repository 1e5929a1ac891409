use anyhow::Context;

use crate::config::Config;

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let state = crate::open_state(&cfg).await?;
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "refbridge API listening");
    crate::serve(state, listener, crate::shutdown_signal()).await?;
    Ok(())
}
