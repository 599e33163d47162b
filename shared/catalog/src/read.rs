//! Opening published datasets: [`Catalog`] resolves a dataset (or a pinned version) to an
//! [`Opened`] cube with a [`ZarrReader`] cached per immutable artifact.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::NaiveDateTime;
use climate_domain::DatasetId;
use climate_domain::grid::Grid;
use climate_domain::template::Display;
use climate_geodata::encode::Cube;
use climate_geodata::zarr_read::{ZarrReader, grid_from_transform};
use climate_infra::Platform;
use climate_infra::db::{Database, DatasetRecord, VersionRecord};
use climate_infra::store::Store;
use climate_infra::templates::{LoadedTemplate, TemplateCatalog};

use crate::{CatalogError, CubeMeta};

/// Most store readers kept open.
pub const READER_CACHE: usize = 64;

/// The published datasets and their versions, as a read model.
#[derive(Debug)]
pub struct Catalog {
    db: Arc<dyn Database>,
    store: Store,
    templates: Arc<TemplateCatalog>,
    /// Open readers of version stores, by artifact id. Versions never change, so a reader
    /// stays valid; the least recently used one goes when [`READER_CACHE`] are open.
    readers: Mutex<Lru<Arc<ZarrReader>>>,
}

impl Catalog {
    /// The catalog over a platform's database, store and templates.
    #[must_use]
    pub fn new(platform: &Platform) -> Self {
        Self {
            db: platform.db.clone(),
            store: platform.store.clone(),
            templates: platform.catalog.clone(),
            readers: Mutex::new(Lru::new(READER_CACHE)),
        }
    }

    /// The template a dataset was made from, if it is still configured.
    #[must_use]
    pub fn template(&self, ds: &DatasetRecord) -> Option<&LoadedTemplate> {
        self.templates.get(&ds.template_id)
    }

    /// The published datasets with their current versions, by id.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn published(&self) -> Result<Vec<(DatasetRecord, VersionRecord)>, CatalogError> {
        let mut out = Vec::new();
        for ds in self.db.list_datasets().await? {
            let Some(n) = ds.current_version.filter(|_| ds.published) else {
                continue;
            };
            if let Some(v) = self.db.get_version(&ds.dataset_id, n).await? {
                out.push((ds, v));
            }
        }
        out.sort_by(|a, b| a.0.dataset_id.cmp(&b.0.dataset_id));
        Ok(out)
    }

    /// A published dataset with its current version, without opening its store.
    ///
    /// # Errors
    /// [`CatalogError::UnknownDataset`] for an unknown or unpublished dataset, or one without a
    /// current version.
    pub async fn current(&self, id: &str) -> Result<(DatasetRecord, VersionRecord), CatalogError> {
        let unknown = || CatalogError::UnknownDataset(id.to_owned());
        // An id that is not an id names no dataset.
        let id = DatasetId::new(id).map_err(|_| unknown())?;
        let ds = self
            .db
            .get_dataset(&id)
            .await?
            .filter(|d| d.published)
            .ok_or_else(unknown)?;
        let n = ds.current_version.ok_or_else(unknown)?;
        let version = self.db.get_version(&id, n).await?.ok_or_else(unknown)?;
        Ok((ds, version))
    }

    /// Opens a published dataset's current version for reading.
    ///
    /// # Errors
    /// [`CatalogError::UnknownDataset`] for an unknown or unpublished dataset;
    /// [`CatalogError::Store`] when the store cannot be read.
    pub async fn open(&self, id: &str) -> Result<Opened, CatalogError> {
        let (ds, version) = self.current(id).await?;
        self.open_version(ds, version).await
    }

    /// Opens one version of a dataset (current or pinned) for reading.
    ///
    /// # Errors
    /// [`CatalogError::Metadata`] when the version's metadata is unreadable;
    /// [`CatalogError::Store`] when its store cannot be read.
    pub async fn open_version(
        &self,
        ds: DatasetRecord,
        version: VersionRecord,
    ) -> Result<Opened, CatalogError> {
        let cube = CubeMeta::of(&version)?;
        let grid = grid_from_transform(
            &cube.crs,
            cube.transform,
            [cube.shape[1] as usize, cube.shape[2] as usize],
        );
        let times = cube.times();
        let reader = match self.cached(&version.artifact_id) {
            Some(r) => r,
            None => {
                let r = ZarrReader::open(
                    self.store.object_store(),
                    &version.storage_prefix,
                    &cube.bases,
                    &cube.variable,
                    grid.clone(),
                    cube.shape[0],
                )
                .await
                .map_err(|e| CatalogError::Store(e.to_string()))?;
                self.keep(&version.artifact_id, r)
            }
        };
        let template = self.template(&ds);
        let long_name = template.map_or_else(
            || cube.variable.clone(),
            |t| t.template.long_name().to_owned(),
        );
        let display = template.and_then(|t| t.template.display.clone());
        Ok(Opened {
            ds,
            version,
            cube,
            grid,
            times,
            reader,
            long_name,
            display,
        })
    }

    /// Readers held open.
    #[must_use]
    pub fn open_readers(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru<Arc<ZarrReader>>> {
        self.readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn cached(&self, artifact: &str) -> Option<Arc<ZarrReader>> {
        self.lock().get(artifact)
    }

    fn keep(&self, artifact: &str, reader: ZarrReader) -> Arc<ZarrReader> {
        let reader = Arc::new(reader);
        self.lock().insert(artifact, reader.clone());
        reader
    }
}

/// A published dataset's version, ready to read.
#[derive(Debug)]
pub struct Opened {
    /// The dataset.
    pub ds: DatasetRecord,
    /// The version opened.
    pub version: VersionRecord,
    /// The version's cube description.
    pub cube: CubeMeta,
    /// Level-0 grid.
    pub grid: Grid,
    /// Period starts.
    pub times: Vec<NaiveDateTime>,
    /// The store.
    pub reader: Arc<ZarrReader>,
    /// Long name (template's, else the variable).
    pub long_name: String,
    /// Map styling, if the template has one.
    pub display: Option<Display>,
}

impl Opened {
    /// The dataset's labels.
    #[must_use]
    pub fn labels(&self) -> Labels {
        Labels {
            variable: self.cube.variable.clone(),
            units: self.cube.units.clone(),
            long_name: self.long_name.clone(),
            period_type: self.cube.period_type,
        }
    }
}

/// The names a window is encoded with, owned so that blocking encoders can take them along.
#[derive(Debug, Clone)]
pub struct Labels {
    /// Data variable.
    pub variable: String,
    /// Units.
    pub units: String,
    /// Long name.
    pub long_name: String,
    /// Period type.
    pub period_type: climate_domain::PeriodType,
}

impl Labels {
    /// A window of `values` over `times × grid`, labelled.
    #[must_use]
    pub fn cube<'a>(
        &'a self,
        times: &'a [NaiveDateTime],
        grid: &'a Grid,
        values: &'a [f32],
    ) -> Cube<'a> {
        Cube {
            variable: &self.variable,
            units: &self.units,
            long_name: &self.long_name,
            period_type: self.period_type,
            times,
            grid,
            values,
        }
    }
}

/// A least-recently-used cache by string key, for a few dozen entries: every hit renews an
/// entry, and an insert into a full cache evicts the entry unused for longest.
#[derive(Debug)]
pub struct Lru<V> {
    capacity: usize,
    /// Advances on every use; an entry keeps the value at its last use.
    clock: u64,
    entries: HashMap<String, (u64, V)>,
}

impl<V: Clone> Lru<V> {
    /// An empty cache holding at most `capacity` entries (at least one).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            clock: 0,
            entries: HashMap::new(),
        }
    }

    /// The value under `key`, now the most recently used.
    pub fn get(&mut self, key: &str) -> Option<V> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(key).map(|(used, v)| {
            *used = clock;
            v.clone()
        })
    }

    /// Stores `value` under `key` as the most recently used, evicting the least recently used
    /// entry when the cache is full.
    pub fn insert(&mut self, key: &str, value: V) {
        self.clock += 1;
        if !self.entries.contains_key(key)
            && self.entries.len() >= self.capacity
            && let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(k, _)| k.clone())
        {
            self.entries.remove(&oldest);
        }
        self.entries.insert(key.to_owned(), (self.clock, value));
    }

    /// Entries held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::Lru;

    #[test]
    fn the_least_recently_used_entry_is_evicted() {
        let mut lru = Lru::new(3);
        for (k, v) in [("a", 1), ("b", 2), ("c", 3)] {
            lru.insert(k, v);
        }
        // A hit renews "a": "b" is now the oldest.
        assert_eq!(lru.get("a"), Some(1));
        lru.insert("d", 4);
        assert_eq!(lru.len(), 3);
        assert_eq!(lru.get("b"), None, "the least recently used entry went");
        assert_eq!(
            (lru.get("a"), lru.get("c"), lru.get("d")),
            (Some(1), Some(3), Some(4))
        );
        // Replacing a key evicts nothing.
        lru.insert("c", 30);
        assert_eq!((lru.len(), lru.get("c")), (3, Some(30)));
        assert_eq!((lru.get("a"), lru.get("d")), (Some(1), Some(4)));
        // Entries used since survive a run of new keys longer than the oldest ones.
        lru.insert("e", 5);
        assert_eq!(lru.get("c"), None);
        assert!(!lru.is_empty());
    }

    #[test]
    fn a_full_cache_is_never_wiped() {
        let mut lru = Lru::new(64);
        for i in 0..64 {
            lru.insert(&format!("k{i}"), i);
        }
        lru.insert("k64", 64);
        assert_eq!(lru.len(), 64, "one entry evicted, not all");
        assert_eq!(lru.get("k0"), None);
        assert_eq!(lru.get("k1"), Some(1));
    }
}
