//! Garbage collection of pruned versions never deletes what a retained version reads: over
//! random sequences of ingestions, appends, rollbacks, prunes and collections (on SQLite and
//! a directory store, with the platform's own `collect_pruned`), every version still retained
//! reads back every chunk exactly as it was written, through its own prefix and its `bases`.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use climate_domain::run::RunKind;
use climate_domain::{DatasetId, ExtentId, RunId, TemplateId};
use climate_infra::db::{Admission, NewOutbox, NewRun, NewVersion};
use climate_infra::messages::{TASK_TOPIC, TaskMessage};
use climate_infra::{Config, Platform};
use object_store::path::Path;
use object_store::{ObjectStoreExt as _, PutPayload};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// A fresh version of `chunks` chunks.
    Ingest(u64),
    /// The current version extended by `more` chunks, reading the others through bases.
    Append(u64),
    /// The `pick`th retained version made current.
    Rollback(usize),
    /// The `pick`th retained, non-current version pruned.
    Prune(usize),
    /// Garbage collection with no retention.
    Collect,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u64..4).prop_map(Op::Ingest),
        (1u64..3).prop_map(Op::Append),
        (0usize..8).prop_map(Op::Rollback),
        (0usize..8).prop_map(Op::Prune),
        Just(Op::Collect),
    ]
}

/// What the test knows of a version: its prefix, bases and the writer of each chunk.
#[derive(Debug, Clone)]
struct Model {
    prefix: String,
    bases: Vec<String>,
    /// Chunk index → the version number that wrote it.
    chunks: Vec<i64>,
}

struct World {
    platform: Platform,
    dataset: DatasetId,
    versions: BTreeMap<i64, Model>,
    current: Option<i64>,
    pruned: Vec<i64>,
    clock: DateTime<Utc>,
    _dir: tempfile::TempDir,
}

impl World {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = BTreeMap::from([(
            "CLIMATE_API_DATA_DIR".to_owned(),
            dir.path().join("data").display().to_string(),
        )]);
        let config = Config::load(None, &env).expect("the embedded configuration");
        let platform = Platform::connect(config, &|_| Ok(()))
            .await
            .expect("connects");
        Self {
            platform,
            dataset: DatasetId::new("gc_sle").expect("id"),
            versions: BTreeMap::new(),
            current: None,
            pruned: Vec::new(),
            clock: DateTime::from_timestamp(1_700_000_000, 0).expect("a time"),
            _dir: dir,
        }
    }

    fn tick(&mut self) -> DateTime<Utc> {
        self.clock += Duration::seconds(10);
        self.clock
    }

    fn retained(&self) -> Vec<i64> {
        self.versions
            .keys()
            .copied()
            .filter(|n| !self.pruned.contains(n))
            .collect()
    }

    /// Writes a version: chunks `from..` are its own, the rest come from `bases`.
    async fn write(&mut self, chunks: Vec<i64>, from: usize, bases: Vec<String>) {
        let db = self.platform.db.clone();
        let n = self.versions.keys().max().map_or(1, |m| m + 1);
        let t = self.tick();
        let run_id = RunId::generate();
        let run = NewRun {
            run_id,
            kind: RunKind::Ingestion,
            dataset_id: self.dataset.clone(),
            template_id: TemplateId::new("gc").expect("id"),
            extent_id: ExtentId::new("sle").expect("id"),
            request: serde_json::json!({"n": n}),
            principal: None,
            created_at: t,
        };
        let outbox = NewOutbox {
            topic: TASK_TOPIC.into(),
            payload: TaskMessage::new(run_id).to_json(),
            available_at: t,
        };
        db.admit_run(&run, &outbox, Admission::Always)
            .await
            .expect("admit");
        db.claim_run(&run_id, "w", t, t + Duration::seconds(60))
            .await
            .expect("claim")
            .expect("claimable");
        let prefix = format!("datasets/gc_sle/art-{n}");
        let store = self.platform.store.object_store();
        for (c, writer) in chunks.iter().enumerate().skip(from) {
            store
                .put(
                    &Path::from(format!("{prefix}/c/{c}")),
                    PutPayload::from(writer.to_string().into_bytes()),
                )
                .await
                .expect("put");
        }
        let v = NewVersion {
            dataset_id: self.dataset.clone(),
            template_id: TemplateId::new("gc").expect("id"),
            extent_id: ExtentId::new("sle").expect("id"),
            artifact_id: format!("art-{n}"),
            storage_prefix: prefix.clone(),
            coverage_start: "2025-01-01".into(),
            coverage_end: "2025-01-31".into(),
            metadata: serde_json::json!({"bases": bases}),
            publish: true,
        };
        db.publish_version(&run_id, "w", &v, t)
            .await
            .expect("publish");
        self.versions.insert(
            n,
            Model {
                prefix,
                bases,
                chunks,
            },
        );
        self.current = Some(n);
    }

    async fn apply(&mut self, op: &Op) {
        let db = self.platform.db.clone();
        match *op {
            Op::Ingest(k) => {
                let n = self.versions.keys().max().map_or(1, |m| m + 1);
                self.write(vec![n; k as usize], 0, Vec::new()).await;
            }
            Op::Append(more) => {
                let Some(c) = self.current else { return };
                let base = self.versions[&c].clone();
                let n = self.versions.keys().max().map_or(1, |m| m + 1);
                // The last chunk of the base is rewritten, as the pipeline rewrites a partial
                // last time chunk.
                let keep = base.chunks.len() - 1;
                let mut chunks = base.chunks[..keep].to_vec();
                chunks.extend(std::iter::repeat_n(n, 1 + more as usize));
                let mut bases = vec![base.prefix.clone()];
                bases.extend(base.bases.iter().cloned());
                self.write(chunks, keep, bases).await;
            }
            Op::Rollback(pick) => {
                let retained = self.retained();
                let Some(&n) = retained.get(pick % retained.len().max(1)) else {
                    return;
                };
                let t = self.tick();
                db.rollback(&self.dataset, n, "test", t)
                    .await
                    .expect("rollback");
                self.current = Some(n);
            }
            Op::Prune(pick) => {
                let candidates: Vec<i64> = self
                    .retained()
                    .into_iter()
                    .filter(|n| Some(*n) != self.current)
                    .collect();
                let Some(&n) = candidates.get(pick % candidates.len().max(1)) else {
                    return;
                };
                let t = self.tick();
                db.prune_version(&self.dataset, n, "test", t)
                    .await
                    .expect("prune");
                self.pruned.push(n);
            }
            Op::Collect => {
                let t = self.tick();
                climate_infra::housekeeping::collect_pruned(&self.platform, t)
                    .await
                    .expect("collect");
            }
        }
    }

    /// Every retained version reads every chunk as written.
    async fn check(&self) -> Result<(), String> {
        let store = self.platform.store.object_store();
        for n in self.retained() {
            let m = &self.versions[&n];
            for (c, writer) in m.chunks.iter().enumerate() {
                let mut found = None;
                for prefix in std::iter::once(&m.prefix).chain(m.bases.iter()) {
                    if let Ok(r) = store.get(&Path::from(format!("{prefix}/c/{c}"))).await {
                        found = Some(r.bytes().await.map_err(|e| e.to_string())?);
                        break;
                    }
                }
                let got = found.ok_or_else(|| format!("version {n} lost chunk {c}"))?;
                if got.as_ref() != writer.to_string().as_bytes() {
                    return Err(format!("version {n} chunk {c}: {got:?}, wrote {writer}"));
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn collection_never_deletes_what_a_retained_version_reads(ops in proptest::collection::vec(op(), 1..24)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let outcome: Result<usize, String> = rt.block_on(async {
            let mut w = World::new().await;
            w.apply(&Op::Ingest(2)).await;
            for op in &ops {
                w.apply(op).await;
                w.check().await.map_err(|e| format!("after {op:?}: {e}"))?;
            }
            // With every pruned version collectable, what no retained version reads is gone.
            w.apply(&Op::Collect).await;
            w.check().await?;
            let store = w.platform.store.object_store();
            let mut freed = 0;
            for n in &w.pruned {
                let m = &w.versions[n];
                let read = w.retained().iter().any(|r| w.versions[r].bases.contains(&m.prefix));
                let left = store.head(&Path::from(format!("{}/c/{}", m.prefix, m.chunks.len() - 1))).await.is_ok();
                if !read && left {
                    return Err(format!("pruned version {n}, read by no retained version, kept its objects"));
                }
                freed += usize::from(!read);
            }
            Ok(freed)
        });
        prop_assert!(outcome.is_ok(), "{:?} ({ops:?})", outcome);
    }
}
