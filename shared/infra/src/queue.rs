//! The task queue behind the [`Queue`] trait: an in-process queue for standalone mode and
//! RabbitMQ for distributed mode.
//!
//! Delivery is at-least-once. The in-process queue is not durable by itself; it is made durable
//! through the database (every run is re-announced from its row at start-up). RabbitMQ uses a
//! durable quorum queue, persistent messages, publisher confirms and a dead-letter queue.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Notify;

/// Errors of the queue layer.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The broker failed or is unreachable.
    #[error("queue broker error: {0}")]
    Broker(String),
    /// The broker refused a message (negative publisher confirm).
    #[error("queue broker did not confirm the message")]
    NotConfirmed,
    /// The URL names no supported queue.
    #[error("unsupported queue url '{0}': expected memory:// or amqp://…")]
    UnsupportedUrl(String),
}

impl From<lapin::Error> for QueueError {
    fn from(e: lapin::Error) -> Self {
        Self::Broker(e.to_string())
    }
}

/// Result alias of this module.
pub type QueueResult<T> = Result<T, QueueError>;

/// What a consumer does with a delivery once handled.
#[async_trait]
pub trait Acker: Send + Sync {
    /// Done; remove the message.
    async fn ack(&self) -> QueueResult<()>;
    /// Not done; deliver again.
    async fn requeue(&self) -> QueueResult<()>;
    /// Unprocessable; move to the dead-letter queue.
    async fn dead_letter(&self) -> QueueResult<()>;
}

/// Message headers (AMQP application headers): the W3C trace context (`traceparent`,
/// `tracestate`) that makes the API's request and the worker's task one trace.
pub type Headers = BTreeMap<String, String>;

/// One delivered message.
pub struct Delivery {
    /// Message body.
    pub payload: Vec<u8>,
    /// Message headers (string-valued ones; others are ignored).
    pub headers: Headers,
    /// Whether the broker delivered it before.
    pub redelivered: bool,
    /// Settles the delivery.
    pub acker: Box<dyn Acker>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("payload_len", &self.payload.len())
            .field("redelivered", &self.redelivered)
            .finish_non_exhaustive()
    }
}

/// A stream of deliveries.
#[async_trait]
pub trait Consumer: Send {
    /// The next delivery; `None` when the consumer was closed (connection lost): create a new
    /// one after a pause.
    async fn next(&mut self) -> Option<QueueResult<Delivery>>;
}

/// A task queue.
#[async_trait]
pub trait Queue: Send + Sync + std::fmt::Debug {
    /// `memory` or `rabbitmq`.
    fn kind(&self) -> &'static str;
    /// Whether accepted messages survive a process restart by themselves.
    fn is_durable(&self) -> bool;
    /// Publishes one message with its headers and waits for the broker's confirmation.
    async fn publish(&self, payload: &[u8], headers: &Headers) -> QueueResult<()>;
    /// Puts a message straight into the dead-letter queue, for a task whose delivery was
    /// already acknowledged when it failed for good.
    async fn publish_dead_letter(&self, payload: &[u8], headers: &Headers) -> QueueResult<()>;
    /// Opens a consumer receiving at most `prefetch` unacknowledged messages.
    async fn consumer(&self, prefetch: u16) -> QueueResult<Box<dyn Consumer>>;
    /// Checks the broker.
    async fn ping(&self) -> QueueResult<()>;
    /// Messages waiting (ready) in the queue, where known.
    async fn depth(&self) -> QueueResult<u64>;
    /// Messages in the dead-letter queue.
    async fn dead_letter_depth(&self) -> QueueResult<u64>;
}

/// Connects to the queue named by `url`.
///
/// # Errors
/// [`QueueError`] when the URL is unsupported or the broker is unreachable.
pub async fn connect(url: &str, name: &str) -> QueueResult<Arc<dyn Queue>> {
    if url.starts_with("memory:") {
        Ok(Arc::new(MemoryQueue::default()))
    } else if url.starts_with("amqp:") || url.starts_with("amqps:") {
        Ok(Arc::new(AmqpQueue::connect(url, name).await?))
    } else {
        Err(QueueError::UnsupportedUrl(url.to_owned()))
    }
}

// ---------------------------------------------------------------------------------------------
// In-process queue

#[derive(Debug, Default)]
struct MemoryInner {
    ready: Mutex<VecDeque<(Vec<u8>, Headers)>>,
    dead: Mutex<Vec<Vec<u8>>>,
    notify: Notify,
}

/// In-process queue for standalone mode.
#[derive(Debug, Default, Clone)]
pub struct MemoryQueue {
    inner: Arc<MemoryInner>,
}

impl MemoryInner {
    fn push(&self, payload: Vec<u8>, headers: Headers) {
        self.ready
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push_back((payload, headers));
        self.notify.notify_one();
    }

    fn bury(&self, payload: Vec<u8>) {
        self.dead
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(payload);
    }
}

struct MemoryAcker {
    inner: Arc<MemoryInner>,
    payload: Vec<u8>,
    headers: Headers,
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(&self) -> QueueResult<()> {
        Ok(())
    }
    async fn requeue(&self) -> QueueResult<()> {
        self.inner.push(self.payload.clone(), self.headers.clone());
        Ok(())
    }
    async fn dead_letter(&self) -> QueueResult<()> {
        self.inner.bury(self.payload.clone());
        Ok(())
    }
}

struct MemoryConsumer {
    inner: Arc<MemoryInner>,
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn next(&mut self) -> Option<QueueResult<Delivery>> {
        loop {
            // Register interest before checking, so a push between the check and the wait is
            // not missed.
            let notified = self.inner.notify.notified();
            let item = self
                .inner
                .ready
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop_front();
            if let Some((payload, headers)) = item {
                return Some(Ok(Delivery {
                    acker: Box::new(MemoryAcker {
                        inner: self.inner.clone(),
                        payload: payload.clone(),
                        headers: headers.clone(),
                    }),
                    payload,
                    headers,
                    redelivered: false,
                }));
            }
            notified.await;
        }
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    fn kind(&self) -> &'static str {
        "memory"
    }
    fn is_durable(&self) -> bool {
        false
    }
    async fn publish(&self, payload: &[u8], headers: &Headers) -> QueueResult<()> {
        self.inner.push(payload.to_vec(), headers.clone());
        Ok(())
    }
    async fn publish_dead_letter(&self, payload: &[u8], _headers: &Headers) -> QueueResult<()> {
        self.inner.bury(payload.to_vec());
        Ok(())
    }
    async fn consumer(&self, _prefetch: u16) -> QueueResult<Box<dyn Consumer>> {
        Ok(Box::new(MemoryConsumer {
            inner: self.inner.clone(),
        }))
    }
    async fn ping(&self) -> QueueResult<()> {
        Ok(())
    }
    async fn depth(&self) -> QueueResult<u64> {
        Ok(self
            .inner
            .ready
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len() as u64)
    }
    async fn dead_letter_depth(&self) -> QueueResult<u64> {
        Ok(self
            .inner
            .dead
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len() as u64)
    }
}

// ---------------------------------------------------------------------------------------------
// RabbitMQ

/// Longest wait for the AMQP handshake. A broker can accept the TCP connection and then not
/// answer (overloaded, or out of file descriptors); without a bound a process would hang at
/// start-up without a word. With it, the caller logs and retries.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Longest wait for the broker to acknowledge a `connection.close`.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens a connection named after this process and its `role`. lapin closes a connection once
/// it and all its channels are dropped.
async fn connect_amqp(url: &str, role: &str) -> QueueResult<Connection> {
    // The name shows in `rabbitmqctl list_connections name` and the management UI.
    let name = format!(
        "{} {role} (pid {})",
        std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "climate".to_owned()),
        std::process::id()
    );
    let props = ConnectionProperties::default().with_connection_name(name.into());
    match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url, props)).await {
        Ok(conn) => Ok(conn?),
        Err(_) => Err(QueueError::Broker(format!(
            "no AMQP handshake within {} s (the broker accepted the connection but did not answer)",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// Deletes the queue `name`, its dead-letter queue and its dead-letter exchange, whatever they
/// hold; what does not exist is skipped. For tests and for operators retiring a deployment.
///
/// # Errors
/// [`QueueError::Broker`] when the broker is unreachable or refuses a deletion.
pub async fn delete_amqp_topology(url: &str, name: &str) -> QueueResult<()> {
    let conn = connect_amqp(url, "cleanup").await?;
    // A failed deletion closes its channel, so each deletion gets its own.
    for queue in [name.to_owned(), format!("{name}.dlq")] {
        let ch = conn.create_channel().await?;
        ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    let ch = conn.create_channel().await?;
    ch.exchange_delete(
        format!("{name}.dlx").as_str().into(),
        ExchangeDeleteOptions::default(),
    )
    .await?;
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, conn.close(200, "cleanup done".into())).await;
    Ok(())
}

/// RabbitMQ queue: a durable quorum queue `name` whose rejected messages go through the
/// `{name}.dlx` exchange to the quorum queue `{name}.dlq`.
#[derive(Debug)]
pub struct AmqpQueue {
    url: String,
    name: String,
    /// Connection and confirm-mode publishing channel; replaced after a failure.
    state: tokio::sync::Mutex<Option<(Connection, Channel)>>,
}

impl AmqpQueue {
    /// Connects and declares the topology.
    ///
    /// # Errors
    /// [`QueueError::Broker`] when the broker is unreachable or refuses the declarations.
    pub async fn connect(url: &str, name: &str) -> QueueResult<Self> {
        let q = Self {
            url: url.to_owned(),
            name: name.to_owned(),
            state: tokio::sync::Mutex::new(None),
        };
        q.channel().await?;
        Ok(q)
    }

    fn dlq(&self) -> String {
        format!("{}.dlq", self.name)
    }

    fn dlx(&self) -> String {
        format!("{}.dlx", self.name)
    }

    async fn declare(&self, ch: &Channel) -> QueueResult<()> {
        let quorum = || {
            let mut t = FieldTable::default();
            t.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
            t
        };
        ch.exchange_declare(
            self.dlx().as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
        ch.queue_declare(
            self.dlq().as_str().into(),
            QueueDeclareOptions::durable(),
            quorum(),
        )
        .await?;
        ch.queue_bind(
            self.dlq().as_str().into(),
            self.dlx().as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        let mut args = quorum();
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(self.dlx().as_str().into()),
        );
        ch.queue_declare(
            self.name.as_str().into(),
            QueueDeclareOptions::durable(),
            args,
        )
        .await?;
        Ok(())
    }

    /// The publishing channel, reconnecting when the previous connection died.
    async fn channel(&self) -> QueueResult<Channel> {
        let mut state = self.state.lock().await;
        if let Some((conn, ch)) = state.as_ref()
            && conn.status().connected()
            && ch.status().connected()
        {
            return Ok(ch.clone());
        }
        *state = None;
        let conn = connect_amqp(&self.url, "publisher").await?;
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        self.declare(&ch).await?;
        *state = Some((conn, ch.clone()));
        Ok(ch)
    }

    async fn reset(&self) {
        *self.state.lock().await = None;
    }

    /// Publishes a persistent message and waits for the broker's confirmation.
    async fn publish_to(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        headers: &Headers,
    ) -> QueueResult<()> {
        let ch = self.channel().await?;
        let mut table = FieldTable::default();
        for (k, v) in headers {
            table.insert(k.as_str().into(), AMQPValue::LongString(v.as_str().into()));
        }
        let result = async {
            let confirm = ch
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    BasicPublishOptions::default(),
                    payload,
                    BasicProperties::default()
                        .with_delivery_mode(2)
                        .with_content_type("application/json".into())
                        .with_headers(table.clone()),
                )
                .await?
                .await?;
            if confirm.is_ack() {
                Ok(())
            } else {
                Err(QueueError::NotConfirmed)
            }
        }
        .await;
        if result.is_err() {
            self.reset().await;
        }
        result
    }

    async fn queue_depth(&self, queue: &str) -> QueueResult<u64> {
        let ch = self.channel().await?;
        let q = ch
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        match q {
            Ok(q) => Ok(u64::from(q.message_count())),
            Err(e) => {
                self.reset().await;
                Err(e.into())
            }
        }
    }
}

struct AmqpAcker(lapin::Acker);

#[async_trait]
impl Acker for AmqpAcker {
    async fn ack(&self) -> QueueResult<()> {
        self.0.ack(BasicAckOptions::default()).await?;
        Ok(())
    }
    async fn requeue(&self) -> QueueResult<()> {
        self.0
            .nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            })
            .await?;
        Ok(())
    }
    async fn dead_letter(&self) -> QueueResult<()> {
        // Without requeue, the broker routes the message to the queue's dead-letter exchange.
        self.0
            .nack(BasicNackOptions {
                requeue: false,
                ..BasicNackOptions::default()
            })
            .await?;
        Ok(())
    }
}

struct AmqpConsumer {
    // Keeps the consumer's own connection alive; it is separate from the publishing one so a
    // consumer failure never blocks publication.
    _conn: Connection,
    inner: lapin::Consumer,
}

#[async_trait]
impl Consumer for AmqpConsumer {
    async fn next(&mut self) -> Option<QueueResult<Delivery>> {
        let d = self.inner.next().await?;
        Some(d.map_err(QueueError::from).map(|d| {
            Delivery {
                headers: d
                    .properties
                    .headers()
                    .as_ref()
                    .map(|t| {
                        t.inner()
                            .iter()
                            .filter_map(|(k, v)| match v {
                                AMQPValue::LongString(s) => Some((
                                    k.as_str().to_owned(),
                                    String::from_utf8_lossy(s.as_bytes()).into_owned(),
                                )),
                                _ => None,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                payload: d.data,
                redelivered: d.redelivered,
                acker: Box::new(AmqpAcker(d.acker)),
            }
        }))
    }
}

#[async_trait]
impl Queue for AmqpQueue {
    fn kind(&self) -> &'static str {
        "rabbitmq"
    }
    fn is_durable(&self) -> bool {
        true
    }
    async fn publish(&self, payload: &[u8], headers: &Headers) -> QueueResult<()> {
        self.publish_to("", &self.name, payload, headers).await
    }
    async fn publish_dead_letter(&self, payload: &[u8], headers: &Headers) -> QueueResult<()> {
        // The dead-letter exchange is a fanout bound to the dead-letter queue.
        self.publish_to(&self.dlx(), "", payload, headers).await
    }
    async fn consumer(&self, prefetch: u16) -> QueueResult<Box<dyn Consumer>> {
        let conn = connect_amqp(&self.url, "consumer").await?;
        let ch = conn.create_channel().await?;
        self.declare(&ch).await?;
        ch.basic_qos(prefetch.max(1), BasicQosOptions::default())
            .await?;
        let tag = format!("climate-worker-{}", uuid::Uuid::now_v7());
        let inner = ch
            .basic_consume(
                self.name.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Box::new(AmqpConsumer { _conn: conn, inner }))
    }
    async fn ping(&self) -> QueueResult<()> {
        self.channel().await.map(|_| ())
    }
    async fn depth(&self) -> QueueResult<u64> {
        self.queue_depth(&self.name).await
    }
    async fn dead_letter_depth(&self) -> QueueResult<u64> {
        self.queue_depth(&self.dlq()).await
    }
}
