//! Prometheus metrics and the `/metrics` HTTP endpoint.

use std::net::SocketAddr;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The agent's metrics.
pub struct Metrics {
    registry: Registry,
    /// Operations by kind and result.
    pub operations: IntCounterVec,
    /// Operation durations by kind.
    pub operation_seconds: HistogramVec,
    /// Bytes written to the checkpoint store.
    pub checkpoint_bytes: IntCounter,
    /// Containers by status (set on each scrape).
    pub containers: IntGaugeVec,
    /// RPCs served, by method.
    pub rpcs: IntCounterVec,
    /// Downtime of successful moves (frozen on the source until running on the target).
    pub move_downtime: prometheus::Histogram,
    /// Compressed bytes moves sent to peers.
    pub move_bytes_sent: IntCounter,
    /// Lazy moves: from the freeze until every page was on the target.
    pub move_resident: prometheus::Histogram,
    /// Lazy moves: pages that followed the container, by how (`faulted` on demand, `pushed`).
    pub move_lazy_pages: IntCounterVec,
    /// Backups taken here.
    pub backups: IntCounter,
    /// How long backups froze their container.
    pub backup_frozen: prometheus::Histogram,
    /// Compressed bytes backups added to the store (new chunks only).
    pub backup_bytes_added: IntCounter,
    /// Compressed bytes sent to replicas.
    pub backup_bytes_sent: IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let operations = IntCounterVec::new(
            Opts::new(
                "migrate_operations_total",
                "Operations finished, by kind and result",
            ),
            &["kind", "result"],
        )
        .expect("metric");
        let operation_seconds = HistogramVec::new(
            HistogramOpts::new(
                "migrate_operation_duration_seconds",
                "Operation duration, by kind",
            )
            .buckets(vec![
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            &["kind"],
        )
        .expect("metric");
        let checkpoint_bytes = IntCounter::new(
            "migrate_checkpoint_bytes_total",
            "Bytes of checkpoints written to the store",
        )
        .expect("metric");
        let containers = IntGaugeVec::new(
            Opts::new("migrate_containers", "Containers by status"),
            &["status"],
        )
        .expect("metric");
        let rpcs = IntCounterVec::new(
            Opts::new("migrate_rpc_requests_total", "RPCs served, by method"),
            &["method"],
        )
        .expect("metric");
        let move_downtime = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "migrate_move_downtime_seconds",
                "Downtime of successful moves",
            )
            .buckets(vec![0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0]),
        )
        .expect("metric");
        let move_bytes_sent = IntCounter::new(
            "migrate_move_bytes_sent_total",
            "Compressed bytes sent to peers by moves",
        )
        .expect("metric");
        let move_resident = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "migrate_move_resident_seconds",
                "Lazy moves: from the freeze until all memory was on the target",
            )
            .buckets(vec![0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0]),
        )
        .expect("metric");
        let move_lazy_pages = IntCounterVec::new(
            Opts::new(
                "migrate_move_lazy_pages_total",
                "Lazy moves: pages that followed the container, faulted on demand or pushed",
            ),
            &["how"],
        )
        .expect("metric");
        let backups =
            IntCounter::new("migrate_backups_total", "Backups taken on this host").expect("metric");
        let backup_frozen = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "migrate_backup_frozen_seconds",
                "How long backups froze their container",
            )
            .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
        )
        .expect("metric");
        let backup_bytes_added = IntCounter::new(
            "migrate_backup_bytes_added_total",
            "Compressed bytes backups added to the store (new chunks)",
        )
        .expect("metric");
        let backup_bytes_sent = IntCounter::new(
            "migrate_backup_bytes_sent_total",
            "Compressed bytes of backups sent to replicas",
        )
        .expect("metric");
        for m in [
            Box::new(backups.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(backup_frozen.clone()),
            Box::new(backup_bytes_added.clone()),
            Box::new(backup_bytes_sent.clone()),
            Box::new(move_downtime.clone()),
            Box::new(move_bytes_sent.clone()),
            Box::new(move_resident.clone()),
            Box::new(move_lazy_pages.clone()),
            Box::new(operations.clone()),
            Box::new(operation_seconds.clone()),
            Box::new(checkpoint_bytes.clone()),
            Box::new(containers.clone()),
            Box::new(rpcs.clone()),
        ] {
            registry.register(m).expect("unique metric");
        }
        Metrics {
            registry,
            operations,
            operation_seconds,
            checkpoint_bytes,
            containers,
            rpcs,
            move_downtime,
            move_bytes_sent,
            move_resident,
            move_lazy_pages,
            backups,
            backup_frozen,
            backup_bytes_added,
            backup_bytes_sent,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Serves `GET /metrics` on `addr` until `shutdown` resolves. `refresh` runs before each scrape.
pub async fn serve(
    addr: SocketAddr,
    render: impl Fn() -> String + Send + Sync + 'static,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let render = std::sync::Arc::new(render);
    tokio::pin!(shutdown);
    loop {
        let (mut sock, _) = tokio::select! {
            r = listener.accept() => r?,
            () = &mut shutdown => return Ok(()),
        };
        let render = render.clone();
        tokio::spawn(async move {
            let mut req = vec![0u8; 4096];
            let n = sock.read(&mut req).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&req[..n]);
            let (status, body) = if head.starts_with("GET /metrics ") {
                ("200 OK", render())
            } else {
                ("404 Not Found", "see /metrics\n".to_string())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}
