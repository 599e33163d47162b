//! Conformance of the [`Queue`] implementations (in-process and RabbitMQ).
//!
//! Covers publish/consume round trips, requeue, ack, dead-lettering, ready-message depth,
//! durability flags, and — for RabbitMQ — the declared topology (a quorum queue whose rejected
//! messages go through `{name}.dlx` to the quorum queue `{name}.dlq`). Each RabbitMQ test uses
//! its own `climate.test.<uuid>` queue, deleted with its DLQ and DLX when the test ends.

use std::sync::Arc;
use std::time::Duration;

use climate_infra::queue::{self, Consumer, Delivery, Headers, Queue, QueueError};
use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties, ExchangeKind};

use crate::support::{self, Cleanup};

/// How long to wait for a message that should arrive.
const ARRIVES: Duration = Duration::from_secs(5);
/// How long to wait for a message that should not arrive.
const ABSENT: Duration = Duration::from_millis(400);
/// How long a broker may take to settle counters and dead-lettering.
const SETTLES: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Fixture

/// A queue of one backend, removed when dropped.
#[derive(Debug)]
pub struct TestQueue {
    queue: Arc<dyn Queue>,
    /// Queue name (also the base of the DLQ and DLX names).
    name: String,
    _cleanup: Option<Cleanup>,
}

impl std::ops::Deref for TestQueue {
    type Target = dyn Queue;
    fn deref(&self) -> &Self::Target {
        self.queue.as_ref()
    }
}

impl TestQueue {
    async fn memory() -> Self {
        let name = format!("climate.test.{}", support::unique());
        let queue = queue::connect("memory://", &name)
            .await
            .expect("open the in-process queue");
        Self {
            queue,
            name,
            _cleanup: None,
        }
    }

    async fn rabbitmq() -> Self {
        let url = support::amqp_url();
        let name = format!("climate.test.{}", support::unique());
        let cleanup = Cleanup::new(format!("queue {name}"), {
            let (url, name) = (url.clone(), name.clone());
            move || async move { delete_topology(&url, &name).await }
        });
        let queue = queue::connect(&url, &name).await.unwrap_or_else(|e| {
            panic!(
                "connect to RabbitMQ at {url} ({}): {e}",
                support::AMQP_URL_VAR
            )
        });
        Self {
            queue,
            name,
            _cleanup: Some(cleanup),
        }
    }
}

async fn delete_topology(url: &str, name: &str) {
    if let Err(e) = queue::delete_amqp_topology(url, name).await {
        eprintln!("cleanup of {name}: {e}");
    }
}

// Each conformance test below, on both backends.
conformance!(
    [
        memory => { let q = super::TestQueue::memory().await; assert_eq!(q.kind(), "memory"); q },
        rabbitmq => { let q = super::TestQueue::rabbitmq().await; assert_eq!(q.kind(), "rabbitmq"); q },
    ],
    [
        publish_then_consume_returns_the_payload,
        requeue_redelivers,
        ack_removes_the_message,
        dead_letter_moves_the_message_to_the_dlq,
        publish_dead_letter_skips_the_queue,
        depth_counts_ready_messages,
        ping_answers,
    ]
);

#[tokio::test]
async fn memory_queue_is_not_durable() {
    let q = TestQueue::memory().await;
    assert!(!q.is_durable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_queue_is_durable() {
    let q = TestQueue::rabbitmq().await;
    assert!(q.is_durable());
}

#[tokio::test]
async fn connect_rejects_unsupported_urls() {
    let err = queue::connect("kafka://localhost:9092", "q")
        .await
        .expect_err("kafka is not supported");
    assert!(matches!(err, QueueError::UnsupportedUrl(_)), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Helpers

async fn consumer(q: &TestQueue) -> Box<dyn Consumer> {
    q.consumer(1).await.expect("open a consumer")
}

/// Publishes `payload` and receives it on a new consumer (which is returned, to settle the
/// delivery on).
async fn round_trip(
    q: &TestQueue,
    payload: &[u8],
    headers: &Headers,
) -> (Box<dyn Consumer>, Delivery) {
    q.publish(payload, headers).await.expect("publish");
    let mut c = consumer(q).await;
    let d = receive(&mut c).await;
    assert_eq!(d.payload, payload, "the published payload arrives");
    (c, d)
}

/// The next delivery, which must arrive within [`ARRIVES`].
async fn receive(consumer: &mut Box<dyn Consumer>) -> Delivery {
    tokio::time::timeout(ARRIVES, consumer.next())
        .await
        .expect("a delivery within the timeout")
        .expect("the consumer is open")
        .expect("a delivery, not an error")
}

/// Asserts that nothing is delivered within [`ABSENT`].
async fn assert_nothing(consumer: &mut Box<dyn Consumer>, why: &str) {
    if let Ok(got) = tokio::time::timeout(ABSENT, consumer.next()).await {
        panic!("{why}: expected no delivery, got {got:?}");
    }
}

/// Waits until `read` returns `expected`; fails with the last value otherwise.
async fn assert_settles<F, Fut>(expected: u64, what: &str, read: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = u64>,
{
    let last = std::sync::Mutex::new(None);
    let ok = support::eventually(SETTLES, || async {
        let v = read().await;
        *last.lock().expect("lock") = Some(v);
        v == expected
    })
    .await;
    assert!(
        ok,
        "{what}: expected {expected}, last read {:?}",
        last.lock().expect("lock")
    );
}

// ---------------------------------------------------------------------------------------------
// Conformance tests

async fn publish_then_consume_returns_the_payload(q: &TestQueue) {
    let payload = br#"{"v":1,"run_id":"r-1"}"#;
    let headers = Headers::from([(
        "traceparent".to_owned(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
    )]);
    let (mut c, d) = round_trip(q, payload, &headers).await;
    assert_eq!(d.headers, headers, "headers travel with the message");
    assert!(!d.redelivered, "a first delivery is not a redelivery");
    d.acker.ack().await.expect("ack");

    // Order is preserved for a single consumer.
    for i in 0..3 {
        q.publish(format!("m{i}").as_bytes(), &Headers::new())
            .await
            .expect("publish");
    }
    for i in 0..3 {
        let d = receive(&mut c).await;
        assert_eq!(d.payload, format!("m{i}").into_bytes());
        d.acker.ack().await.expect("ack");
    }
}

async fn requeue_redelivers(q: &TestQueue) {
    let headers = Headers::from([("k".to_owned(), "v".to_owned())]);
    let (mut c, first) = round_trip(q, b"again", &headers).await;
    first.acker.requeue().await.expect("requeue");

    let second = receive(&mut c).await;
    assert_eq!(second.payload, b"again", "the requeued message comes back");
    assert_eq!(second.headers.get("k").map(String::as_str), Some("v"));
    second.acker.ack().await.expect("ack");
    assert_nothing(&mut c, "after ack of the redelivery").await;
    assert_eq!(q.dead_letter_depth().await.expect("dead_letter_depth"), 0);
}

async fn ack_removes_the_message(q: &TestQueue) {
    let (mut c, d) = round_trip(q, b"once", &Headers::new()).await;
    d.acker.ack().await.expect("ack");
    assert_nothing(&mut c, "after ack").await;
    drop(c);

    // Nor does a fresh consumer see it.
    let mut fresh = consumer(q).await;
    assert_nothing(&mut fresh, "a new consumer after ack").await;
    assert_eq!(q.depth().await.expect("depth"), 0);
    assert_eq!(q.dead_letter_depth().await.expect("dead_letter_depth"), 0);
}

async fn dead_letter_moves_the_message_to_the_dlq(q: &TestQueue) {
    assert_eq!(q.dead_letter_depth().await.expect("dead_letter_depth"), 0);
    let (mut c, d) = round_trip(q, b"poison", &Headers::new()).await;
    d.acker.dead_letter().await.expect("dead_letter");

    assert_settles(1, "dead_letter_depth", || async {
        q.dead_letter_depth().await.expect("dead_letter_depth")
    })
    .await;
    assert_nothing(&mut c, "a dead-lettered message is not redelivered").await;
    assert_eq!(q.depth().await.expect("depth"), 0);
}

async fn publish_dead_letter_skips_the_queue(q: &TestQueue) {
    q.publish_dead_letter(b"failed after its ack", &Headers::new())
        .await
        .expect("publish_dead_letter");
    assert_settles(1, "dead_letter_depth", || async {
        q.dead_letter_depth().await.expect("dead_letter_depth")
    })
    .await;
    assert_eq!(q.depth().await.expect("depth"), 0);
    let mut c = consumer(q).await;
    assert_nothing(&mut c, "a dead letter is never delivered as a task").await;
}

async fn depth_counts_ready_messages(q: &TestQueue) {
    assert_eq!(q.depth().await.expect("depth"), 0);
    for i in 0..3 {
        q.publish(format!("d{i}").as_bytes(), &Headers::new())
            .await
            .expect("publish");
    }
    assert_settles(3, "depth with no consumer", || async {
        q.depth().await.expect("depth")
    })
    .await;

    // An unacknowledged delivery is no longer ready (prefetch 1 takes exactly one).
    let mut c = consumer(q).await;
    let d = receive(&mut c).await;
    assert_eq!(d.payload, b"d0");
    assert_settles(2, "depth with one message in flight", || async {
        q.depth().await.expect("depth")
    })
    .await;
    d.acker.ack().await.expect("ack");
    for i in 1..3 {
        let d = receive(&mut c).await;
        assert_eq!(d.payload, format!("d{i}").into_bytes());
        d.acker.ack().await.expect("ack");
    }
    assert_settles(0, "depth once drained", || async {
        q.depth().await.expect("depth")
    })
    .await;
}

async fn ping_answers(q: &TestQueue) {
    q.ping().await.expect("ping");
}

// ---------------------------------------------------------------------------------------------
// RabbitMQ topology

fn quorum_args(dlx: Option<&str>) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    if let Some(dlx) = dlx {
        t.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(dlx.into()),
        );
    }
    t
}

fn classic_args() -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("classic".into()),
    );
    t
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions::durable()
}

fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    }
}

fn is_precondition_failed(e: &lapin::Error) -> bool {
    matches!(
        e.kind(),
        lapin::ErrorKind::ProtocolError(a)
            if matches!(a.kind(), AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED))
    )
}

/// Declares `queue` on a fresh channel (a refused declaration closes its channel).
async fn declare(
    conn: &Connection,
    queue: &str,
    options: QueueDeclareOptions,
    args: FieldTable,
) -> Result<lapin::Queue, lapin::Error> {
    let ch = conn.create_channel().await.expect("create a channel");
    ch.queue_declare(queue.into(), options, args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_declares_quorum_queues_with_a_dead_letter_exchange() {
    let q = TestQueue::rabbitmq().await;
    let (name, dlq, dlx) = (
        q.name.clone(),
        format!("{}.dlq", q.name),
        format!("{}.dlx", q.name),
    );
    let conn = Connection::connect(&support::amqp_url(), ConnectionProperties::default())
        .await
        .expect("connect to RabbitMQ");

    // Everything exists.
    for queue in [&name, &dlq] {
        declare(&conn, queue, passive(), FieldTable::default())
            .await
            .unwrap_or_else(|e| panic!("queue {queue} exists: {e}"));
    }
    let ch = conn.create_channel().await.expect("create a channel");
    ch.exchange_declare(
        dlx.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            passive: true,
            ..ExchangeDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("the dead-letter exchange exists");

    // Re-declaring with exactly the expected arguments is accepted…
    declare(&conn, &name, durable(), quorum_args(Some(&dlx)))
        .await
        .expect("the queue is a durable quorum queue dead-lettering to its own DLX");
    declare(&conn, &dlq, durable(), quorum_args(None))
        .await
        .expect("the DLQ is a durable quorum queue");

    // …and with different ones refused, so the arguments above are the real ones.
    let err = declare(&conn, &name, durable(), classic_args())
        .await
        .expect_err("the queue is not a classic queue");
    assert!(is_precondition_failed(&err), "{err}");
    let err = declare(&conn, &name, durable(), quorum_args(Some("elsewhere.dlx")))
        .await
        .expect_err("the queue dead-letters to its own DLX only");
    assert!(is_precondition_failed(&err), "{err}");
    let err = declare(&conn, &dlq, durable(), classic_args())
        .await
        .expect_err("the DLQ is not a classic queue");
    assert!(is_precondition_failed(&err), "{err}");

    // The DLX routes to the DLQ: a message published to it directly lands there.
    let ch = conn.create_channel().await.expect("create a channel");
    ch.confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    let confirm = ch
        .basic_publish(
            dlx.as_str().into(),
            "".into(),
            lapin::options::BasicPublishOptions::default(),
            b"direct",
            lapin::BasicProperties::default(),
        )
        .await
        .expect("publish to the DLX")
        .await
        .expect("confirmation");
    assert!(confirm.is_ack());
    assert_settles(1, "DLQ depth after publishing to the DLX", || async {
        q.dead_letter_depth().await.expect("dead_letter_depth")
    })
    .await;
    let _ = conn.close(200, "done".into()).await;
}
