//! Polygonal features: rings, polygons with holes and multipolygons, read from GeoJSON
//! geometry objects and checked (closed rings, finite coordinates, no self-intersections).

use serde_json::Value;

/// A point `[x, y]` (longitude, latitude for GeoJSON).
pub type Point = [f64; 2];

/// A closed ring: the first point repeated as the last.
#[derive(Debug, Clone, PartialEq)]
pub struct Ring(Vec<Point>);

impl Ring {
    /// A ring through `points`, closed if it is not already.
    ///
    /// # Errors
    /// [`GeometryError`] for fewer than three distinct points or a non-finite coordinate.
    pub fn new(mut points: Vec<Point>) -> Result<Self, GeometryError> {
        if let Some(bad) = points
            .iter()
            .find(|p| !(p[0].is_finite() && p[1].is_finite()))
        {
            return Err(GeometryError::NotFinite(*bad));
        }
        if let (Some(&first), Some(&last)) = (points.first(), points.last())
            && first != last
        {
            points.push(first);
        }
        if points.len() < 4 {
            return Err(GeometryError::TooFewPoints(points.len()));
        }
        Ok(Self(points))
    }

    /// The points, the first repeated as the last.
    pub fn points(&self) -> &[Point] {
        &self.0
    }

    /// The signed area (positive when counter-clockwise, in a y-up frame).
    pub fn signed_area(&self) -> f64 {
        signed_area(&self.0)
    }

    /// `[xmin, ymin, xmax, ymax]`.
    pub fn bounds(&self) -> [f64; 4] {
        self.0.iter().fold(
            [
                f64::INFINITY,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NEG_INFINITY,
            ],
            |[x0, y0, x1, y1], p| [x0.min(p[0]), y0.min(p[1]), x1.max(p[0]), y1.max(p[1])],
        )
    }

    /// The ring with every point mapped by `f` (a projection).
    ///
    /// # Errors
    /// What [`Ring::new`] refuses of the result (a projection that produced NaN).
    pub fn map(&self, f: impl FnMut(Point) -> Point) -> Result<Self, GeometryError> {
        Self::new(self.0.iter().copied().map(f).collect())
    }

    /// A pair of non-adjacent edges that cross or touch, as edge indices (the one with the
    /// smallest first edge). Edges are swept in order of their western end, and only edges
    /// whose boxes overlap are compared, so a ring of many vertices costs about n log n.
    pub fn self_intersection(&self) -> Option<(usize, usize)> {
        let p = &self.0;
        let n = p.len() - 1;
        let west = |i: usize| p[i][0].min(p[i + 1][0]);
        let east = |i: usize| p[i][0].max(p[i + 1][0]);
        let south = |i: usize| p[i][1].min(p[i + 1][1]);
        let north = |i: usize| p[i][1].max(p[i + 1][1]);
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| west(a).total_cmp(&west(b)));
        let mut active: Vec<usize> = Vec::new();
        let mut found: Option<(usize, usize)> = None;
        for &e in &order {
            active.retain(|&a| east(a) >= west(e));
            for &a in &active {
                let (i, j) = (a.min(e), a.max(e));
                // Adjacent edges share a point by construction (the last edge meets the first).
                if j == i + 1 || (i == 0 && j == n - 1) {
                    continue;
                }
                if south(a) > north(e) || south(e) > north(a) {
                    continue;
                }
                if segments_meet(p[i], p[i + 1], p[j], p[j + 1]) && found.is_none_or(|f| (i, j) < f)
                {
                    found = Some((i, j));
                }
            }
            active.push(e);
        }
        found
    }
}

/// Signed area of a closed point list (shoelace).
pub(crate) fn signed_area(points: &[Point]) -> f64 {
    points
        .windows(2)
        .map(|w| w[0][0] * w[1][1] - w[1][0] * w[0][1])
        .sum::<f64>()
        / 2.0
}

fn orient(a: Point, b: Point, c: Point) -> f64 {
    (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
}

fn on_segment(a: Point, b: Point, p: Point) -> bool {
    p[0] >= a[0].min(b[0])
        && p[0] <= a[0].max(b[0])
        && p[1] >= a[1].min(b[1])
        && p[1] <= a[1].max(b[1])
}

/// Whether segments `ab` and `cd` share a point.
fn segments_meet(a: Point, b: Point, c: Point, d: Point) -> bool {
    let (d1, d2) = (orient(c, d, a), orient(c, d, b));
    let (d3, d4) = (orient(a, b, c), orient(a, b, d));
    if ((d1 > 0.0 && d2 < 0.0) || (d1 < 0.0 && d2 > 0.0))
        && ((d3 > 0.0 && d4 < 0.0) || (d3 < 0.0 && d4 > 0.0))
    {
        return true;
    }
    (d1 == 0.0 && on_segment(c, d, a))
        || (d2 == 0.0 && on_segment(c, d, b))
        || (d3 == 0.0 && on_segment(a, b, c))
        || (d4 == 0.0 && on_segment(a, b, d))
}

/// A polygon: an exterior ring and any number of holes.
#[derive(Debug, Clone, PartialEq)]
pub struct Polygon {
    /// The outer boundary.
    pub exterior: Ring,
    /// Holes inside it.
    pub holes: Vec<Ring>,
}

/// One or more polygons (a GeoJSON `Polygon` is a multipolygon of one).
#[derive(Debug, Clone, PartialEq)]
pub struct MultiPolygon(pub Vec<Polygon>);

impl MultiPolygon {
    /// Reads a GeoJSON `Polygon` or `MultiPolygon` geometry object.
    ///
    /// # Errors
    /// [`GeometryError`] naming what is wrong (another type, a malformed ring).
    pub fn from_geojson(geometry: &Value) -> Result<Self, GeometryError> {
        let kind = geometry
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let coordinates = geometry
            .get("coordinates")
            .ok_or(GeometryError::Shape("a geometry has `coordinates`"))?;
        let polygon = |v: &Value| -> Result<Polygon, GeometryError> {
            let rings = v
                .as_array()
                .ok_or(GeometryError::Shape("a polygon is an array of rings"))?;
            let mut rings = rings.iter().map(ring);
            let exterior = rings
                .next()
                .ok_or(GeometryError::Shape("a polygon has an exterior ring"))??;
            Ok(Polygon {
                exterior,
                holes: rings.collect::<Result<_, _>>()?,
            })
        };
        match kind {
            "Polygon" => Ok(Self(vec![polygon(coordinates)?])),
            "MultiPolygon" => coordinates
                .as_array()
                .ok_or(GeometryError::Shape(
                    "a multipolygon is an array of polygons",
                ))?
                .iter()
                .map(polygon)
                .collect::<Result<_, _>>()
                .map(Self),
            other => Err(GeometryError::Type(other.to_owned())),
        }
    }

    /// `[xmin, ymin, xmax, ymax]` of the exteriors.
    pub fn bounds(&self) -> [f64; 4] {
        self.0.iter().map(|p| p.exterior.bounds()).fold(
            [
                f64::INFINITY,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NEG_INFINITY,
            ],
            |a, b| {
                [
                    a[0].min(b[0]),
                    a[1].min(b[1]),
                    a[2].max(b[2]),
                    a[3].max(b[3]),
                ]
            },
        )
    }

    /// The area (exteriors less holes), in squared coordinate units.
    pub fn area(&self) -> f64 {
        self.0
            .iter()
            .map(|p| {
                p.exterior.signed_area().abs()
                    - p.holes.iter().map(|h| h.signed_area().abs()).sum::<f64>()
            })
            .sum()
    }

    /// Every ring, exteriors first within each polygon.
    pub fn rings(&self) -> impl Iterator<Item = (&Ring, bool)> {
        self.0.iter().flat_map(|p| {
            std::iter::once((&p.exterior, false)).chain(p.holes.iter().map(|h| (h, true)))
        })
    }

    /// Checks that no ring crosses or touches itself.
    ///
    /// # Errors
    /// [`GeometryError::SelfIntersection`] naming the polygon, ring and edges.
    pub fn validate(&self) -> Result<(), GeometryError> {
        for (p, polygon) in self.0.iter().enumerate() {
            let rings = std::iter::once(&polygon.exterior).chain(&polygon.holes);
            for (r, ring) in rings.enumerate() {
                if let Some((a, b)) = ring.self_intersection() {
                    return Err(GeometryError::SelfIntersection {
                        polygon: p,
                        ring: r,
                        edges: (a, b),
                    });
                }
            }
        }
        Ok(())
    }

    /// The multipolygon with every point mapped by `f` (a projection).
    ///
    /// # Errors
    /// What [`Ring::new`] refuses of the result.
    pub fn map(&self, mut f: impl FnMut(Point) -> Point) -> Result<Self, GeometryError> {
        self.0
            .iter()
            .map(|p| {
                Ok(Polygon {
                    exterior: p.exterior.map(&mut f)?,
                    holes: p
                        .holes
                        .iter()
                        .map(|h| h.map(&mut f))
                        .collect::<Result<_, _>>()?,
                })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

fn ring(v: &Value) -> Result<Ring, GeometryError> {
    let points = v
        .as_array()
        .ok_or(GeometryError::Shape("a ring is an array of positions"))?
        .iter()
        .map(|p| match p.as_array().map(Vec::as_slice) {
            Some([x, y, ..]) => match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => Ok([x, y]),
                _ => Err(GeometryError::Shape("a position is [x, y] of numbers")),
            },
            _ => Err(GeometryError::Shape("a position is [x, y] of numbers")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ring::new(points)
}

/// Why a geometry was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GeometryError {
    /// Not a polygonal geometry.
    #[error("geometry type '{0}' is not supported: use Polygon or MultiPolygon")]
    Type(String),
    /// Malformed coordinates.
    #[error("malformed coordinates: {0}")]
    Shape(&'static str),
    /// A ring with fewer than three distinct points.
    #[error("a ring needs at least 4 positions (the first repeated as the last), got {0}")]
    TooFewPoints(usize),
    /// NaN or an infinite coordinate.
    #[error("coordinate {0:?} is not a finite number")]
    NotFinite(Point),
    /// A ring crosses or touches itself.
    #[error(
        "polygon {polygon}, ring {ring} intersects itself (edges {} and {}): fix the geometry, e.g. with ST_MakeValid or shapely's make_valid",
        edges.0, edges.1
    )]
    SelfIntersection {
        /// Index of the polygon in the multipolygon.
        polygon: usize,
        /// Ring within it (0: the exterior).
        ring: usize,
        /// The two edges that meet.
        edges: (usize, usize),
    },
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn polygons_and_multipolygons_are_read_with_their_holes() {
        let square = json!({"type": "Polygon", "coordinates": [
            [[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]],
            [[1, 1], [1, 2], [2, 2], [2, 1], [1, 1]]
        ]});
        let m = MultiPolygon::from_geojson(&square).expect("valid");
        assert_eq!(m.0.len(), 1);
        assert_eq!(m.0[0].holes.len(), 1);
        assert!((m.area() - 15.0).abs() < 1e-12);
        assert_eq!(m.bounds(), [0.0, 0.0, 4.0, 4.0]);
        let multi = json!({"type": "MultiPolygon", "coordinates": [
            [[[0, 0], [1, 0], [1, 1], [0, 0]]],
            [[[5, 5], [6, 5], [6, 6], [5, 5]]]
        ]});
        let m = MultiPolygon::from_geojson(&multi).expect("valid");
        assert_eq!(m.0.len(), 2);
        assert!((m.area() - 1.0).abs() < 1e-12);
        assert_eq!(m.validate(), Ok(()));
    }

    /// Every pair of non-adjacent edges, as the sweep must agree with.
    fn brute_force(r: &Ring) -> Option<(usize, usize)> {
        let p = r.points();
        let n = p.len() - 1;
        (0..n)
            .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
            .filter(|&(i, j)| !(j == i + 1 || (i == 0 && j == n - 1)))
            .find(|&(i, j)| segments_meet(p[i], p[i + 1], p[j], p[j + 1]))
    }

    #[test]
    fn the_sweep_finds_what_comparing_every_pair_finds() {
        // Random rings of 5 to 16 vertices on a small integer lattice (many touch and cross).
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |m: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) % m
        };
        let mut crossing = 0;
        for _ in 0..2000 {
            let k = 4 + next(12) as usize;
            let mut pts: Vec<Point> = (0..k).map(|_| [next(8) as f64, next(8) as f64]).collect();
            pts.push(pts[0]);
            let Ok(ring) = Ring::new(pts) else { continue };
            let expected = brute_force(&ring);
            crossing += usize::from(expected.is_some());
            assert_eq!(ring.self_intersection(), expected, "{:?}", ring.points());
        }
        assert!(crossing > 100, "the rings exercise crossings: {crossing}");
        // A fine boundary of 200,000 vertices is checked in well under a second.
        let n = 200_000;
        let circle: Vec<Point> = (0..=n)
            .map(|i| {
                let a = std::f64::consts::TAU * (i % n) as f64 / n as f64;
                [a.cos(), a.sin()]
            })
            .collect();
        assert_eq!(Ring::new(circle).expect("a ring").self_intersection(), None);
    }

    #[test]
    fn malformed_and_self_intersecting_geometry_is_refused_by_name() {
        let point = json!({"type": "Point", "coordinates": [0, 0]});
        assert!(matches!(
            MultiPolygon::from_geojson(&point),
            Err(GeometryError::Type(_))
        ));
        let short = json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]});
        assert!(matches!(
            MultiPolygon::from_geojson(&short),
            Err(GeometryError::TooFewPoints(3))
        ));
        let bow_tie = json!({"type": "Polygon", "coordinates": [
            [[0, 0], [2, 2], [2, 0], [0, 2], [0, 0]]
        ]});
        let m = MultiPolygon::from_geojson(&bow_tie).expect("parses");
        let err = m.validate().expect_err("a bow tie crosses itself");
        assert!(err.to_string().contains("intersects itself"), "{err}");
        let text = json!({"type": "Polygon", "coordinates": [[["a", 0], [1, 0], [1, 1], [0, 0]]]});
        assert!(matches!(
            MultiPolygon::from_geojson(&text),
            Err(GeometryError::Shape(_))
        ));
    }

    #[test]
    fn open_rings_are_closed() {
        let r = Ring::new(vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]).expect("closed for us");
        assert_eq!(r.points().len(), 4);
        assert!(
            (r.signed_area() - 0.5).abs() < 1e-12,
            "counter-clockwise is positive"
        );
    }
}
