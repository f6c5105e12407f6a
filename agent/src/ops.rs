//! Long operations (checkpoint, restore, ...): ids, progress events, the journal, and watching.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use proto::v1::{Operation, OperationEvent, OperationResult};
use tokio::sync::broadcast;

use crate::catalog::{Catalog, JournalEntry, OperationRecord};
use crate::metrics::Metrics;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct Live {
    history: Vec<OperationEvent>,
    tx: broadcast::Sender<OperationEvent>,
    done: bool,
}

/// The registry of operations this agent process runs.
pub struct Operations {
    live: Mutex<HashMap<String, Live>>,
    catalog: Arc<Catalog>,
    metrics: Arc<Metrics>,
}

/// One running operation; dropping it without `finish` records a failure.
pub struct OpHandle {
    ops: Arc<Operations>,
    record: OperationRecord,
    started: Instant,
    finished: bool,
    /// The operation's tracing span.
    pub span: tracing::Span,
}

impl Operations {
    /// A registry writing to `catalog`.
    pub fn new(catalog: Arc<Catalog>, metrics: Arc<Metrics>) -> Arc<Operations> {
        Arc::new(Operations {
            live: Mutex::new(HashMap::new()),
            catalog,
            metrics,
        })
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts an operation of `kind` on `container_id`.
    pub fn start(self: &Arc<Self>, kind: &str, container_id: &str) -> OpHandle {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        self.start_with_id(&id, kind, container_id)
    }

    /// Starts an operation with a given id (the target of a move uses the source's move id).
    pub fn start_with_id(self: &Arc<Self>, id: &str, kind: &str, container_id: &str) -> OpHandle {
        let id = id.to_string();
        let record = OperationRecord {
            id: id.clone(),
            kind: kind.to_string(),
            container_id: container_id.to_string(),
            state: "running".into(),
            started_unix_ms: now_ms(),
            finished_unix_ms: 0,
            error: String::new(),
        };
        if let Err(e) = self.catalog.put_operation(&record) {
            tracing::warn!(operation.id = %id, error = %e, "cannot record operation");
        }
        let (tx, _) = broadcast::channel(256);
        self.live().insert(
            id.clone(),
            Live {
                history: Vec::new(),
                tx,
                done: false,
            },
        );
        let span = tracing::info_span!("operation", operation.id = %id, operation.kind = kind, container.id = container_id);
        OpHandle {
            ops: self.clone(),
            record,
            started: Instant::now(),
            finished: false,
            span,
        }
    }

    /// Operations still running in this process.
    pub fn running(&self) -> usize {
        self.live().values().filter(|l| !l.done).count()
    }

    /// The events so far and a receiver for the rest; `None` for an unknown operation.
    pub fn watch(
        &self,
        id: &str,
    ) -> Option<(
        Vec<OperationEvent>,
        Option<broadcast::Receiver<OperationEvent>>,
    )> {
        let live = self.live();
        match live.get(id) {
            Some(l) => Some((l.history.clone(), (!l.done).then(|| l.tx.subscribe()))),
            None => {
                // Finished by an earlier agent process: replay the journal.
                let record = self.catalog.operation(id).ok()??;
                let mut events: Vec<OperationEvent> = self
                    .catalog
                    .journal_of(id)
                    .ok()?
                    .into_iter()
                    .map(|e| OperationEvent {
                        operation_id: id.to_string(),
                        phase: e.step,
                        message: e.detail,
                        unix_ms: e.unix_ms,
                        ..Default::default()
                    })
                    .collect();
                events.push(OperationEvent {
                    operation_id: id.to_string(),
                    phase: "done".into(),
                    unix_ms: record.finished_unix_ms,
                    done: Some(OperationResult {
                        success: record.state == "succeeded",
                        error: record.error.clone(),
                        operation: Some(to_proto(&record)),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                Some((events, None))
            }
        }
    }

    fn publish(&self, event: OperationEvent, done: bool) {
        let mut live = self.live();
        if let Some(l) = live.get_mut(&event.operation_id) {
            l.history.push(event.clone());
            let _ = l.tx.send(event);
            l.done |= done;
        }
    }
}

/// The proto form of an operation record.
pub fn to_proto(r: &OperationRecord) -> Operation {
    Operation {
        operation_id: r.id.clone(),
        kind: r.kind.clone(),
        container_id: r.container_id.clone(),
        state: r.state.clone(),
        started_unix_ms: r.started_unix_ms,
        finished_unix_ms: r.finished_unix_ms,
        error: r.error.clone(),
    }
}

impl OpHandle {
    /// The operation id.
    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// Publishes a progress event and journals it.
    pub fn event(&self, phase: &str, message: impl Into<String>) {
        let message = message.into();
        let _enter = self.span.enter();
        tracing::info!(phase, "{message}");
        let e = OperationEvent {
            operation_id: self.record.id.clone(),
            phase: phase.to_string(),
            message: message.clone(),
            unix_ms: now_ms(),
            ..Default::default()
        };
        let _ = self.ops.catalog.journal(&JournalEntry {
            operation_id: self.record.id.clone(),
            step: phase.into(),
            detail: message,
            unix_ms: e.unix_ms,
        });
        self.ops.publish(e, false);
    }

    /// Ends the operation: `Ok(result)` (its `success`/`operation` fields are filled in) or the
    /// error line.
    pub fn finish(mut self, result: Result<OperationResult, String>) {
        self.finished = true;
        self.close(result);
    }

    fn close(&mut self, result: Result<OperationResult, String>) {
        let (mut res, state) = match result {
            Ok(r) => (OperationResult { success: true, ..r }, "succeeded"),
            Err(error) => (
                OperationResult {
                    success: false,
                    error,
                    ..Default::default()
                },
                "failed",
            ),
        };
        self.record.state = state.into();
        self.record.error = res.error.clone();
        self.record.finished_unix_ms = now_ms();
        let _ = self.ops.catalog.put_operation(&self.record);
        let _ = self.ops.catalog.journal(&JournalEntry {
            operation_id: self.record.id.clone(),
            step: "done".into(),
            detail: if res.success {
                "succeeded".into()
            } else {
                res.error.clone()
            },
            unix_ms: self.record.finished_unix_ms,
        });
        self.ops
            .metrics
            .operations
            .with_label_values(&[&self.record.kind, state])
            .inc();
        self.ops
            .metrics
            .operation_seconds
            .with_label_values(&[&self.record.kind])
            .observe(self.started.elapsed().as_secs_f64());
        {
            let _enter = self.span.enter();
            if res.success {
                tracing::info!(
                    elapsed_ms = self.started.elapsed().as_millis() as u64,
                    "operation succeeded"
                );
            } else {
                tracing::warn!(error = %res.error, "operation failed");
            }
        }
        res.operation = Some(to_proto(&self.record));
        let event = OperationEvent {
            operation_id: self.record.id.clone(),
            phase: "done".into(),
            unix_ms: self.record.finished_unix_ms,
            done: Some(res),
            ..Default::default()
        };
        self.ops.publish(event, true);
    }
}

impl Drop for OpHandle {
    fn drop(&mut self) {
        if !self.finished {
            self.close(Err("operation ended unexpectedly".into()));
        }
    }
}
