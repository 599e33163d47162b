//! # climate-compute
//!
//! What the platform computes from its grids, as pure functions: district figures for
//! health information systems.
//!
//! - [`geometry`]: polygonal features read from GeoJSON and checked.
//! - [`coverage`]: the exact fraction of every grid cell a feature covers (the exactextract
//!   method: partial cells get their covered fraction, interior cells 1, features smaller than a
//!   cell are never empty). A feature's coverage is computed once per grid and reused for every
//!   period.
//! - [`stats`]: zonal statistics weighted by those fractions as exactextract weighs them
//!   (`mean`, `sum`, `count`, `min`, `max`, `stdev`, `median`, `majority`; cells without data
//!   skipped; no value, with a reason, for a feature over no data).
//! - [`temporal`]: aggregation of a series to the DHIS2 period types (daily, ISO weekly,
//!   monthly, quarterly, yearly) with `mean|sum|min|max`, counting a period only when all its
//!   source periods are present.
//!
//! ## Charter
//! No I/O: no files, sockets, clocks or environment. Inputs are values; the job engine and the
//! catalog feed them. Checked by the architecture test.

pub mod coverage;
pub mod geometry;
pub mod stats;
pub mod temporal;

pub use coverage::{Coverage, coverage};
pub use geometry::{GeometryError, MultiPolygon, Polygon, Ring};
pub use stats::{NoValue, Statistic, Summary};
pub use temporal::{TargetPeriod, TargetPeriodType, TemporalMethod, combine, group};
