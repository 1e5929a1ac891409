use refbridge_storage::{Store, StoreOptions};

use crate::config::Config;

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let store = Store::connect(cfg.database_url.expose(), &StoreOptions::default()).await?;
    store.migrate().await?;
    store.close().await;
    println!("migrations applied");
    Ok(())
}
