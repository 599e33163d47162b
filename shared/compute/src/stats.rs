//! Zonal statistics of one field under one feature, weighted by coverage fraction as
//! exactextract weighs them: a cell counts by the fraction of it the feature covers, cells
//! without data (NaN) are skipped, and a feature over no data gets no value.

use std::fmt;
use std::str::FromStr;

use crate::coverage::Coverage;

/// A statistic of the zonal-statistics process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Statistic {
    /// Σ(value·fraction) / Σ fraction.
    Mean,
    /// Σ(value·fraction).
    Sum,
    /// Σ fraction over cells with data: the covered area in cells.
    Count,
    /// The least value of a covered cell (fractions not weighed).
    Min,
    /// The greatest value of a covered cell.
    Max,
    /// The population standard deviation, weighted by fraction.
    Stdev,
    /// The fraction-weighted median (exactextract's weighted quantile).
    Median,
    /// The value covering the most area (ties: the greater value).
    Majority,
}

impl Statistic {
    /// Every statistic, in the order listed in process descriptions.
    pub const ALL: [Statistic; 8] = [
        Self::Mean,
        Self::Sum,
        Self::Count,
        Self::Min,
        Self::Max,
        Self::Stdev,
        Self::Median,
        Self::Majority,
    ];

    /// The name in requests and results.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Mean => "mean",
            Self::Sum => "sum",
            Self::Count => "count",
            Self::Min => "min",
            Self::Max => "max",
            Self::Stdev => "stdev",
            Self::Median => "median",
            Self::Majority => "majority",
        }
    }
}

impl fmt::Display for Statistic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A statistic name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown statistic '{0}': expected one of mean, sum, count, min, max, stdev, median, majority"
)]
pub struct UnknownStatistic(pub String);

impl FromStr for Statistic {
    type Err = UnknownStatistic;
    fn from_str(s: &str) -> Result<Self, UnknownStatistic> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownStatistic(s.to_owned()))
    }
}

/// Why a feature has no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoValue {
    /// The feature covers no cell of the grid.
    OutsideGrid,
    /// Every cell it covers is without data.
    NoData,
}

impl NoValue {
    /// The reason as shown in results.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::OutsideGrid => "the feature covers no cell of the dataset's grid",
            Self::NoData => "every cell under the feature is without data",
        }
    }
}

/// The accumulated cells of one feature on one field.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    sum_c: f64,
    sum_xc: f64,
    min: f64,
    max: f64,
    // West's weighted variance (exactextract's WestVariance).
    west_w: f64,
    west_mean: f64,
    west_t: f64,
    // (value, fraction) of every covered cell with data, for the median and majority.
    cells: Vec<(f32, f64)>,
}

impl Summary {
    /// Accumulates the cells of `field` (row-major, `width` columns, the whole grid or any
    /// window starting at row `row0`, column `col0`) that `coverage` covers.
    pub fn of(field: &[f32], width: usize, origin: (usize, usize), coverage: &Coverage) -> Self {
        let (row0, col0) = origin;
        let mut s = Self {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            ..Self::default()
        };
        for (row, col, c) in coverage.cells() {
            let (Some(r), Some(k)) = (row.checked_sub(row0), col.checked_sub(col0)) else {
                continue;
            };
            if k >= width {
                continue;
            }
            let Some(&v) = field.get(r * width + k) else {
                continue;
            };
            if v.is_nan() {
                continue;
            }
            s.add(v, c);
        }
        s
    }

    fn add(&mut self, v: f32, c: f64) {
        let x = f64::from(v);
        self.sum_c += c;
        self.sum_xc += x * c;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        let old = self.west_mean;
        self.west_w += c;
        self.west_mean += (c / self.west_w) * (x - old);
        self.west_t += c * (x - old) * (x - self.west_mean);
        self.cells.push((v, c));
    }

    /// Whether no covered cell had data.
    pub fn is_empty(&self) -> bool {
        self.sum_c == 0.0
    }

    /// The value of `stat`, `None` when no covered cell had data.
    pub fn value(&self, stat: Statistic) -> Option<f64> {
        if self.is_empty() {
            return None;
        }
        Some(match stat {
            Statistic::Mean => self.sum_xc / self.sum_c,
            Statistic::Sum => self.sum_xc,
            Statistic::Count => self.sum_c,
            Statistic::Min => self.min,
            Statistic::Max => self.max,
            Statistic::Stdev => (self.west_t / self.west_w).sqrt(),
            Statistic::Median => weighted_quantile(&self.histogram(), 0.5),
            Statistic::Majority => self.majority(),
        })
    }

    /// Distinct values ascending, each with the sum of its cells' fractions.
    fn histogram(&self) -> Vec<(f64, f64)> {
        let mut cells = self.cells.clone();
        cells.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut out: Vec<(f64, f64)> = Vec::with_capacity(cells.len());
        for (v, c) in cells {
            match out.last_mut() {
                Some(last) if last.0 == f64::from(v) => last.1 += c,
                _ => out.push((f64::from(v), c)),
            }
        }
        out
    }

    fn majority(&self) -> f64 {
        self.histogram()
            .into_iter()
            .fold((f64::NAN, f64::NEG_INFINITY), |best, (v, c)| {
                if c >= best.1 { (v, c) } else { best }
            })
            .0
    }
}

/// exactextract's weighted quantile of `histogram` (distinct values ascending with their
/// weights): each value is placed at s_i = i·w_i + (n−1)·Σ_{j<i} w_j on a scale of
/// (n−1)·Σw, and `q` interpolates linearly between the values around q·(n−1)·Σw.
fn weighted_quantile(histogram: &[(f64, f64)], q: f64) -> f64 {
    let n = histogram.len();
    let mut s = Vec::with_capacity(n);
    let (mut cumsum, mut total) = (0.0, 0.0);
    for (i, (_, w)) in histogram.iter().enumerate() {
        s.push(if i == 0 {
            0.0
        } else {
            i as f64 * w + (n as f64 - 1.0) * cumsum
        });
        cumsum += w;
        total += w;
    }
    let target = q * total * (n as f64 - 1.0);
    // The first position greater than the target; the one before it is at or below.
    let right = s.partition_point(|si| *si <= target);
    let left = right.saturating_sub(1);
    if right == n {
        return histogram[left].0;
    }
    let (x0, x1) = (histogram[left].0, histogram[right].0);
    x0 + (target - s[left]) * (x1 - x0) / (s[right] - s[left])
}

#[cfg(test)]
mod tests {
    use climate_domain::grid::{Axis, Grid};
    use serde_json::json;

    use super::*;
    use crate::coverage::coverage;
    use crate::geometry::MultiPolygon;

    fn grid() -> Grid {
        Grid {
            crs: climate_domain::Crs::WGS84,
            x: Axis {
                first: 0.5,
                step: 1.0,
                len: 3,
            },
            y: Axis {
                first: 2.5,
                step: -1.0,
                len: 3,
            },
        }
    }

    fn summary(field: &[f32], feature: serde_json::Value) -> Summary {
        let c = coverage(
            &MultiPolygon::from_geojson(&feature).expect("valid"),
            &grid(),
        );
        Summary::of(field, 3, (0, 0), &c)
    }

    #[test]
    fn statistics_weigh_cells_by_the_fraction_covered() {
        // The left column whole (values 1, 4, 7) and half of the middle one (2, 5, 8).
        let field = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
        let s = summary(
            &field,
            json!({"type": "Polygon", "coordinates": [[[0, 0], [1.5, 0], [1.5, 3], [0, 3], [0, 0]]]}),
        );
        let sum = 1.0 + 4.0 + 7.0 + 0.5 * (2.0 + 5.0 + 8.0);
        assert!((s.value(Statistic::Sum).expect("sum") - sum).abs() < 1e-12);
        assert!((s.value(Statistic::Count).expect("count") - 4.5).abs() < 1e-12);
        assert!((s.value(Statistic::Mean).expect("mean") - sum / 4.5).abs() < 1e-12);
        assert_eq!(s.value(Statistic::Min), Some(1.0));
        assert_eq!(s.value(Statistic::Max), Some(8.0));
        let mean = sum / 4.5;
        let var = ([1.0, 4.0, 7.0]
            .iter()
            .map(|x| (x - mean) * (x - mean))
            .sum::<f64>()
            + 0.5
                * [2.0, 5.0, 8.0]
                    .iter()
                    .map(|x| (x - mean) * (x - mean))
                    .sum::<f64>())
            / 4.5;
        assert!((s.value(Statistic::Stdev).expect("stdev") - var.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn nan_cells_are_skipped_and_a_feature_over_no_data_has_no_value() {
        let field = [f32::NAN, 2.0, 3.0, f32::NAN, 5.0, 6.0, f32::NAN, 8.0, 9.0];
        let left =
            json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 3], [0, 3], [0, 0]]]});
        let s = summary(&field, left);
        assert!(s.is_empty());
        assert_eq!(s.value(Statistic::Mean), None);
        let two =
            json!({"type": "Polygon", "coordinates": [[[0, 2], [2, 2], [2, 3], [0, 3], [0, 2]]]});
        assert_eq!(summary(&field, two).value(Statistic::Mean), Some(2.0));
    }

    #[test]
    fn median_and_majority_follow_exactextract() {
        // Weighted quantile with equal weights is the ordinary interpolated median.
        let h = [(1.0, 1.0), (2.0, 1.0), (3.0, 1.0), (4.0, 1.0)];
        assert!((weighted_quantile(&h, 0.5) - 2.5).abs() < 1e-12);
        assert_eq!(weighted_quantile(&[(7.0, 0.3)], 0.5), 7.0);
        // Heavier weight pulls the median towards its value.
        let h = [(1.0, 0.1), (2.0, 1.0), (3.0, 0.1)];
        assert!((weighted_quantile(&h, 0.5) - 2.0).abs() < 1e-12);
        let field = [1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0];
        let all =
            json!({"type": "Polygon", "coordinates": [[[0, 0], [3, 0], [3, 3], [0, 3], [0, 0]]]});
        assert_eq!(summary(&field, all).value(Statistic::Majority), Some(3.0));
        let tie = [
            5.0,
            4.0,
            f32::NAN,
            f32::NAN,
            f32::NAN,
            f32::NAN,
            f32::NAN,
            f32::NAN,
            f32::NAN,
        ];
        let top =
            json!({"type": "Polygon", "coordinates": [[[0, 2], [2, 2], [2, 3], [0, 3], [0, 2]]]});
        assert_eq!(
            summary(&tie, top).value(Statistic::Majority),
            Some(5.0),
            "ties: the greater"
        );
    }

    #[test]
    fn statistic_names_round_trip_and_unknown_ones_are_named() {
        for s in Statistic::ALL {
            assert_eq!(s.as_str().parse::<Statistic>(), Ok(s));
        }
        let err = "average".parse::<Statistic>().expect_err("unknown");
        assert!(err.to_string().contains("'average'") && err.to_string().contains("median"));
    }
}
