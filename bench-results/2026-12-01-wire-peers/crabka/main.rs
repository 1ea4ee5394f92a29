//! Starts a single-node crabka-broker 0.3.8 for benchmarking.
//! Usage: crabka LISTEN_ADDR CONTROLLER_ADDR DATA_DIR
use crabka_broker::{Broker, BrokerConfig};
use std::net::SocketAddr;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let listen: SocketAddr = args.get(1).map_or("127.0.0.1:9092", String::as_str).parse()?;
    let controller: SocketAddr = args.get(2).map_or("127.0.0.1:9093", String::as_str).parse()?;
    let dir = args.get(3).map_or("./crabka-data", String::as_str);
    let config = BrokerConfig {
        listen_addr: listen,
        advertised_listener: listen.to_string(),
        log_dir: dir.into(),
        controller_listen_addr: controller,
        controller_quorum_voters: vec![(1, controller.to_string())],
        ..BrokerConfig::default()
    };
    let broker = Broker::start(config).await?;
    eprintln!("crabka-broker listening on {listen}");
    tokio::signal::ctrl_c().await?;
    broker.shutdown().await;
    Ok(())
}
