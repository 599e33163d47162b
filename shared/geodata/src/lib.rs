//! # climate-geodata
//!
//! Gridded data in and out: decoding source files (NetCDF, GeoTIFF/BigTIFF/COG) into a
//! normalised grid, the providers that locate or fetch those files for a period range, and the
//! GeoZarr (Zarr v3) writer with consolidated metadata.
//!
//! ## Charter
//! - Normalisation happens here, once: coordinate names (`t`, `y`, `x`), longitudes in
//!   −180..180, rows north to south, missing values as NaN. Everything downstream sees one shape.
//! - Providers only find and decode data; they never write versions or touch the database.
//! - The writer writes a complete store under a prefix it is given; making a version current is
//!   the caller's business (the publish transaction).

pub mod cftime;
pub mod encode;
pub mod http;
pub mod providers;
pub mod raster;
pub mod remote_zarr;
pub mod reproject;
pub mod upstream;
pub mod zarr;
pub mod zarr_read;
