//! The read model of Climate API: what a published dataset or a pinned version *is* to every
//! surface (`/datasets`, `/zarr`, `/stac`, `/ogcapi`, downloads, and the computations that read
//! cubes).
//!
//! - [`metadata`]: [`VersionMetadata`], the typed document stored with each version (written by
//!   the pipeline at publication, read here, with a format version), and [`CubeMeta`], a
//!   version's cube: metadata plus the period range it covers.
//! - [`read`]: [`Catalog`] opens a published dataset's current version, or any version, as an
//!   [`Opened`] cube whose [`ZarrReader`](climate_geodata::zarr_read::ZarrReader) is cached per
//!   immutable artifact in a least-recently-used cache, falling back through the version's
//!   `bases` for chunks an appended version did not write.
//! - [`window`]: index windows from coordinates and bboxes, reads of a window, and the colour
//!   scale a period is drawn with.
//! - [`stac`]: the STAC documents, built from records and a base URL (no HTTP state).
//!
//! Knows no HTTP server: errors are [`CatalogError`]s, which the API maps to statuses.

pub mod metadata;
pub mod read;
pub mod stac;
pub mod window;

pub use metadata::{CubeMeta, FORMAT_VERSION, MetadataError, VersionMetadata, iso_step, rfc3339};
pub use read::{Catalog, Labels, Lru, Opened, READER_CACHE};
pub use window::{Window, axis_range, bbox_window, intersect, nearest};

/// Why the catalog could not answer.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// No published dataset has this id (or it has no current version).
    #[error("no published dataset '{0}'")]
    UnknownDataset(String),
    /// A stored version's metadata or coverage is unreadable.
    #[error("version {version} of {dataset} has unreadable metadata: {reason}")]
    Metadata {
        /// The dataset.
        dataset: climate_domain::DatasetId,
        /// The version.
        version: i64,
        /// What is wrong.
        reason: String,
    },
    /// A selection selects nothing or is malformed; the message names the parameter.
    #[error("{0}")]
    Selection(String),
    /// The object store could not be read.
    #[error("object store: {0}")]
    Store(String),
    /// The database could not be read.
    #[error(transparent)]
    Db(#[from] climate_infra::db::DbError),
    /// A computation failed that should not (a bug or an impossible projection).
    #[error("{0}")]
    Internal(String),
}
