//! Feature collections: the areas (districts) a request names, inline or stored.
//!
//! [`areas`] reads and validates a GeoJSON FeatureCollection (Polygon and MultiPolygon
//! features, closed rings, no self-intersection, unique ids; an error names the feature);
//! [`prepare`] turns an upload into the version to store (its canonical text, count, bounds
//! and digest); [`load`] reads a stored version back.

use climate_compute::MultiPolygon;
use climate_infra::db::{Database, FeatureCollectionRecord, NewFeatureCollection};
use serde_json::Value;
use sha2::Digest;

use crate::InputError;

/// A feature of a collection.
#[derive(Debug, Clone)]
pub struct Area {
    /// Its id (the GeoJSON feature's `id`, else `feature-{position}`).
    pub id: String,
    /// Its GeoJSON `properties` (an empty object when it has none).
    pub properties: serde_json::Map<String, Value>,
    /// Its shape, WGS84.
    pub shape: MultiPolygon,
}

impl Area {
    /// The value of property `name` as text (strings as they are, numbers printed).
    pub fn property(&self, name: &str) -> Option<String> {
        text(self.properties.get(name)?)
    }
}

/// A property value as text: strings as they are, numbers printed (DHIS2 org unit codes may
/// be either); anything else has none.
fn text(v: &Value) -> Option<String> {
    v.as_str()
        .map(str::to_owned)
        .or_else(|| v.as_number().map(ToString::to_string))
}

/// A feature of a collection, before its geometry is read.
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    /// Its position in the collection.
    pub index: usize,
    /// The GeoJSON feature.
    pub feature: &'a Value,
}

impl Member<'_> {
    /// Its id: the feature's `id`, else `feature-{position}`.
    pub fn id(&self) -> String {
        match self.feature.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => format!("feature-{}", self.index),
        }
    }

    /// How errors name it: `feature 3 ('bo')`.
    pub fn named(&self) -> String {
        format!("feature {} ('{}')", self.index, self.id())
    }

    /// Property `name` as text (strings as they are, numbers printed).
    pub fn property(&self, name: &str) -> Option<String> {
        text(self.feature.get("properties")?.get(name)?)
    }
}

/// The features of a FeatureCollection sent as `input`: never fetched from a URL, at least
/// one, ids unique.
///
/// # Errors
/// [`InputError`] about `input`, naming the feature.
pub fn members<'a>(collection: &'a Value, input: &str) -> Result<Vec<Member<'a>>, InputError> {
    let bad = |m: String| InputError::new(input, m);
    if collection.get("href").is_some() {
        return Err(bad(
            "geometries are not fetched from URLs: send the FeatureCollection itself, or store it once with POST /features and name it as `feature_collection`".into(),
        ));
    }
    if collection.get("type").and_then(Value::as_str) != Some("FeatureCollection") {
        return Err(bad("must be a GeoJSON FeatureCollection".into()));
    }
    let list = collection
        .get("features")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("a FeatureCollection has a `features` array".into()))?;
    if list.is_empty() {
        return Err(bad("the collection has no features".into()));
    }
    let mut seen = std::collections::HashSet::new();
    list.iter()
        .enumerate()
        .map(|(index, feature)| {
            let m = Member { index, feature };
            let id = m.id();
            if !seen.insert(id.clone()) {
                return Err(bad(format!(
                    "{}: another feature has the id '{id}'; ids name the result rows, so each must be unique",
                    m.named()
                )));
            }
            Ok(m)
        })
        .collect()
}

/// The areas of a FeatureCollection, checked; errors are about `input` and name the feature.
///
/// # Errors
/// [`InputError`]: as [`members`], and a geometry that is not a valid Polygon or
/// MultiPolygon (a ring that crosses itself included).
pub fn areas(collection: &Value, input: &str) -> Result<Vec<Area>, InputError> {
    read_areas(collection, input, true)
}

/// [`areas`], with the geometries checked (`validate`) or, for a stored collection that was
/// checked when it was uploaded, only read.
fn read_areas(collection: &Value, input: &str, validate: bool) -> Result<Vec<Area>, InputError> {
    let bad = |m: String| InputError::new(input, m);
    members(collection, input)?
        .into_iter()
        .map(|m| {
            let named = m.named();
            let f = m.feature;
            let shape = MultiPolygon::from_geojson(f.get("geometry").unwrap_or(&Value::Null))
                .and_then(|s| {
                    if validate {
                        s.validate().map(|()| s)
                    } else {
                        Ok(s)
                    }
                })
                .map_err(|e| bad(format!("{named}: {e}")))?;
            let properties = match f.get("properties") {
                Some(Value::Object(p)) => p.clone(),
                None | Some(Value::Null) => serde_json::Map::new(),
                Some(_) => return Err(bad(format!("{named}: `properties` must be an object"))),
            };
            Ok(Area {
                id: m.id(),
                properties,
                shape,
            })
        })
        .collect()
}

/// Checks a collection id: 1 to 64 characters `a-z 0-9 _ -`, starting with a letter or digit.
///
/// # Errors
/// [`InputError`] about `id`, saying what an id may hold.
pub fn check_id(id: &str) -> Result<(), InputError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(InputError::new(
            "id",
            format!(
                "'{id}' is not a collection id: use 1 to 64 of a-z, 0-9, '_' and '-', starting with a letter or digit (e.g. `districts`)"
            ),
        ))
    }
}

/// The version to store of an upload of `collection` as `collection_id`.
///
/// # Errors
/// [`InputError`] as [`areas`] and [`check_id`] give.
pub fn prepare(
    collection_id: &str,
    title: Option<&str>,
    collection: &Value,
    principal: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<NewFeatureCollection, InputError> {
    check_id(collection_id)?;
    let areas = areas(collection, "features")?;
    let bbox = areas
        .iter()
        .map(|a| a.shape.bounds())
        .reduce(|a, b| {
            [
                a[0].min(b[0]),
                a[1].min(b[1]),
                a[2].max(b[2]),
                a[3].max(b[3]),
            ]
        })
        .unwrap_or([0.0; 4]);
    let geojson = collection.to_string();
    let sha256 = sha2::Sha256::digest(geojson.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(NewFeatureCollection {
        collection_id: collection_id.to_owned(),
        title: title.unwrap_or(collection_id).to_owned(),
        principal: principal.to_owned(),
        feature_count: areas.len() as u64,
        bbox,
        sha256,
        geojson,
        created_at: now,
    })
}

/// Why a stored collection cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No such collection or version.
    #[error("{0}")]
    Unknown(String),
    /// The database cannot be read now.
    #[error("feature collections cannot be read now: {0}")]
    Unavailable(String),
    /// The stored text no longer parses (never written so).
    #[error("stored feature collection is corrupt: {0}")]
    Corrupt(String),
}

/// A stored version of collection `id` (the latest when `version` is `None`) and its areas.
///
/// # Errors
/// [`LoadError`].
pub async fn load(
    db: &dyn Database,
    id: &str,
    version: Option<u32>,
) -> Result<(FeatureCollectionRecord, Vec<Area>), LoadError> {
    let (record, text) = db
        .get_feature_collection(id, version)
        .await
        .map_err(|e| LoadError::Unavailable(e.to_string()))?
        .ok_or_else(|| {
            LoadError::Unknown(match version {
                Some(v) => format!("feature collection '{id}' has no version {v}; GET /features/{id} lists its versions"),
                None => format!("no feature collection '{id}'; GET /features lists them, POST /features stores one"),
            })
        })?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| LoadError::Corrupt(format!("{id}: {e}")))?;
    // Checked when it was stored: only read.
    let areas = read_areas(&value, "feature_collection", false)
        .map_err(|e| LoadError::Corrupt(e.to_string()))?;
    Ok((record, areas))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn square(x: f64, y: f64) -> Value {
        json!({"type": "Polygon", "coordinates": [[[x, y], [x + 1.0, y], [x + 1.0, y + 1.0], [x, y + 1.0], [x, y]]]})
    }

    #[test]
    fn a_bow_tie_is_refused_naming_the_feature() {
        let c = json!({"type": "FeatureCollection", "features": [
            {"type": "Feature", "id": "ok", "geometry": square(0.0, 0.0), "properties": {}},
            {"type": "Feature", "id": "bow", "properties": {}, "geometry": {"type": "Polygon",
                "coordinates": [[[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]]}},
        ]});
        let e = areas(&c, "features").expect_err("refused");
        assert_eq!(e.input, "features");
        assert!(e.message.starts_with("feature 1 ('bow'): "), "{e}");
        assert!(e.message.contains("intersect"), "{e}");
    }

    #[test]
    fn ids_must_be_unique_and_positions_name_features_without_one() {
        let c = json!({"type": "FeatureCollection", "features": [
            {"type": "Feature", "id": 7, "geometry": square(0.0, 0.0)},
            {"type": "Feature", "id": "7", "geometry": square(2.0, 0.0)},
        ]});
        let e = areas(&c, "features").expect_err("refused");
        assert!(e.message.contains("another feature has the id '7'"), "{e}");
        let c = json!({"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": square(0.0, 0.0), "properties": {"code": 12}},
        ]});
        let a = areas(&c, "features").expect("valid");
        assert_eq!(a[0].id, "feature-0");
        assert_eq!(a[0].property("code").as_deref(), Some("12"));
    }

    #[test]
    fn an_upload_is_measured_and_digested_canonically() {
        let c = json!({"type": "FeatureCollection", "features": [
            {"type": "Feature", "id": "a", "geometry": square(-12.0, 7.0)},
            {"type": "Feature", "id": "b", "geometry": square(-11.0, 8.5)},
        ]});
        let now = chrono::Utc::now();
        let v = prepare("districts", None, &c, "local", now).expect("valid");
        assert_eq!(v.feature_count, 2);
        assert_eq!(v.bbox, [-12.0, 7.0, -10.0, 9.5]);
        assert_eq!(v.title, "districts");
        let spaced: Value =
            serde_json::from_str(&serde_json::to_string_pretty(&c).expect("valid")).expect("valid");
        assert_eq!(
            prepare("districts", None, &spaced, "x", now)
                .expect("valid")
                .sha256,
            v.sha256
        );
        assert!(prepare("Districts", None, &c, "x", now).is_err());
        assert!(prepare("", None, &c, "x", now).is_err());
        assert_eq!(check_id("sle-districts_2024"), Ok(()));
    }
}
