//! Query parameters shared by the `/ogcapi` routes (and downloads and syncs): the strict
//! parser and the bbox, datetime and subset grammars.

use super::*;

// ---------------------------------------------------------------------------------------------
// Query parameters

/// The query string as (name, value) pairs, checked against the names a route accepts.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<String>, allowed: &[&str]) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        for (k, _) in &pairs {
            if !allowed.contains(&k.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter '{k}': this endpoint accepts {}",
                    allowed.join(", ")
                )));
            }
        }
        Ok(Self(pairs))
    }

    fn one(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut it = self.0.iter().filter(|(k, _)| k == name);
        let first = it.next().map(|(_, v)| v.as_str());
        if it.next().is_some() {
            return Err(ApiError::bad_request(format!(
                "parameter '{name}' is given more than once"
            )));
        }
        Ok(first)
    }

    fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A route's typed query: `T` declares the parameters (names, descriptions and types, for the
/// OpenAPI document through `IntoParams`); the query string is checked against those names —
/// an unknown or (for a single-valued one) repeated parameter is refused, naming it — and
/// decoded into `T`.
///
/// # Errors
/// 400 naming the parameter.
pub(crate) fn parse_query<T>(raw: Option<String>) -> Result<T, ApiError>
where
    T: utoipa::IntoParams + serde::de::DeserializeOwned,
{
    use utoipa::openapi::{RefOr, Schema};
    let declared = T::into_params(|| Some(utoipa::openapi::path::ParameterIn::Query));
    let names: Vec<&str> = declared.iter().map(|p| p.name.as_str()).collect();
    let q = Query::parse(raw, &names)?;
    let mut fields = serde_json::Map::new();
    for p in &declared {
        let name = p.name.as_str();
        if matches!(p.schema, Some(RefOr::T(Schema::Array(_)))) {
            let all: Vec<Value> = q.all(name).map(|v| Value::String(v.to_owned())).collect();
            if !all.is_empty() {
                fields.insert(name.to_owned(), Value::Array(all));
            }
        } else if let Some(v) = q.one(name)? {
            fields.insert(name.to_owned(), Value::String(v.to_owned()));
        }
    }
    serde_json::from_value(Value::Object(fields))
        .map_err(|e| ApiError::bad_request(format!("query: {e}")))
}

pub(super) fn parse_f64(param: &str, s: &str) -> Result<f64, ApiError> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| ApiError::bad_request(format!("{param}: '{s}' is not a number")))
}

/// `bbox=minx,miny,maxx,maxy` in CRS84.
pub(crate) fn parse_bbox(s: &str) -> Result<[f64; 4], ApiError> {
    let parts: Vec<&str> = s.split(',').collect();
    if parts.len() != 4 {
        return Err(ApiError::bad_request(format!(
            "bbox: '{s}' must be four numbers minLon,minLat,maxLon,maxLat (CRS84)"
        )));
    }
    let v: Vec<f64> = parts
        .iter()
        .map(|p| parse_f64("bbox", p))
        .collect::<Result<_, _>>()?;
    if v[0] > v[2] || v[1] > v[3] {
        return Err(ApiError::bad_request(format!(
            "bbox: '{s}' has min above max; give minLon,minLat,maxLon,maxLat"
        )));
    }
    Ok([v[0], v[1], v[2], v[3]])
}

/// An instant: `YYYY-MM-DD`, or an RFC 3339 / ISO date-time (a `Z` or offset is read as UTC).
pub(super) fn parse_instant(param: &str, s: &str) -> Result<NaiveDateTime, ApiError> {
    use chrono::Datelike;
    let t = parse_instant_any(param, s)?;
    if !(1..=9999).contains(&t.year()) {
        return Err(ApiError::bad_request(format!(
            "{param}: '{s}' is outside the years 1 to 9999"
        )));
    }
    Ok(t)
}

pub(super) fn parse_instant_any(param: &str, s: &str) -> Result<NaiveDateTime, ApiError> {
    let s = s.trim().trim_matches('"');
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.naive_utc());
    }
    for f in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Ok(t);
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN));
    }
    Err(ApiError::bad_request(format!(
        "{param}: '{s}' is not a date or date-time (use e.g. 2025-07-01 or 2025-07-01T00:00:00Z)"
    )))
}

/// A time selection: an instant (the period containing it) or a closed/open interval of
/// period starts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TimeSel {
    Instant(NaiveDateTime),
    Interval(Option<NaiveDateTime>, Option<NaiveDateTime>),
}

pub(crate) fn parse_datetime(param: &str, s: &str) -> Result<TimeSel, ApiError> {
    let open = |p: &str| -> Result<Option<NaiveDateTime>, ApiError> {
        let p = p.trim().trim_matches('"');
        if p.is_empty() || p == ".." || p == "*" {
            Ok(None)
        } else {
            parse_instant(param, p).map(Some)
        }
    };
    match s.split_once('/') {
        Some((a, b)) => {
            let (a, b) = (open(a)?, open(b)?);
            if let (Some(a), Some(b)) = (a, b)
                && a > b
            {
                return Err(ApiError::bad_request(format!(
                    "{param}: '{s}' ends before it starts"
                )));
            }
            Ok(TimeSel::Interval(a, b))
        }
        None => Ok(TimeSel::Instant(parse_instant(param, s)?)),
    }
}

/// The time indices a selection picks out of `times` (period starts of `kind`).
pub(crate) fn select_times(
    opened: &Opened,
    sel: Option<TimeSel>,
    param: &str,
) -> Result<Range<usize>, ApiError> {
    let times = &opened.times;
    let n = times.len();
    let coverage = || {
        format!(
            "the dataset covers {} to {}",
            times.first().map(|t| rfc3339(*t)).unwrap_or_default(),
            times.last().map(|t| rfc3339(*t)).unwrap_or_default()
        )
    };
    let range = match sel {
        None => 0..n,
        Some(TimeSel::Instant(t)) => {
            let start = Period::containing(opened.cube.period_type, t).start();
            match times.binary_search(&start) {
                Ok(i) => i..i + 1,
                Err(_) => {
                    return Err(ApiError::bad_request(format!(
                        "{param}: {} is outside the data; {}",
                        rfc3339(t),
                        coverage()
                    )));
                }
            }
        }
        // An interval selects the periods it intersects: from the one containing its start
        // to the last one starting at or before its end.
        Some(TimeSel::Interval(a, b)) => {
            let kind = opened.cube.period_type;
            let lo = a.map_or(0, |a| {
                times.partition_point(|t| Period::containing(kind, *t).end() <= a)
            });
            let hi = b.map_or(n, |b| times.partition_point(|t| *t <= b));
            lo..hi.max(lo)
        }
    };
    if range.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{param}: no period in the requested interval; {}",
            coverage()
        )));
    }
    Ok(range)
}

/// One `subset` term: `axis(lo:hi)` or `axis(value)`.
#[derive(Debug, Clone)]
pub(super) struct Subset {
    pub(super) axis: char,
    pub(super) lo: String,
    pub(super) hi: Option<String>,
    /// Named `Lon`/`Lat`/`E`/`N`: geographic axes, meaningful only on geographic data.
    pub(super) geographic_name: bool,
}

/// Parses `subset=t("a":"b"),x(lo:hi),y(v)` (terms may also come in several `subset`
/// parameters). Axis names: `t`/`time`, `x`/`Lon`/`E`, `y`/`Lat`/`N`.
pub(super) fn parse_subsets<'a>(
    values: impl Iterator<Item = &'a str>,
) -> Result<Vec<Subset>, ApiError> {
    let mut out = Vec::new();
    for value in values {
        let mut rest = value.trim();
        while !rest.is_empty() {
            let open = rest.find('(').ok_or_else(|| bad_subset(value))?;
            let close = rest.find(')').ok_or_else(|| bad_subset(value))?;
            if close < open {
                return Err(bad_subset(value));
            }
            let name = rest[..open].trim();
            let axis = match name.to_ascii_lowercase().as_str() {
                "t" | "time" => 't',
                "x" | "lon" | "long" | "e" => 'x',
                "y" | "lat" | "n" => 'y',
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "subset: unknown axis '{name}'; use t (or time), x (or Lon) and y (or Lat)"
                    )));
                }
            };
            let geographic_name = matches!(
                name.to_ascii_lowercase().as_str(),
                "lon" | "long" | "e" | "lat" | "n"
            );
            if out.iter().any(|s: &Subset| s.axis == axis) {
                return Err(ApiError::bad_request(format!(
                    "subset: axis '{name}' is subset twice"
                )));
            }
            let inner = &rest[open + 1..close];
            // Split on the first ':' outside quotes (times carry their own colons).
            let mut split = None;
            let mut quoted = false;
            for (i, ch) in inner.char_indices() {
                match ch {
                    '"' => quoted = !quoted,
                    ':' if !quoted => {
                        split = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let (lo, hi) = match split {
                Some(i) => (inner[..i].to_owned(), Some(inner[i + 1..].to_owned())),
                None => (inner.to_owned(), None),
            };
            out.push(Subset {
                axis,
                lo,
                hi,
                geographic_name,
            });
            rest = rest[close + 1..].trim_start_matches(',').trim();
        }
    }
    Ok(out)
}

pub(super) fn bad_subset(value: &str) -> ApiError {
    ApiError::bad_request(format!(
        "subset: '{value}' must look like t(\"2025-07-01\":\"2025-07-05\"),x(-13:-12),y(8)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_parse_with_quoted_times_and_aliases() {
        let s = parse_subsets(
            [
                "t(\"2025-07-01T00:00:00Z\":\"2025-07-03\"),Lon(-13:-12)",
                "lat(8.5)",
            ]
            .into_iter(),
        )
        .expect("parse");
        assert_eq!(s.len(), 3);
        assert_eq!(
            (s[0].axis, s[0].lo.as_str()),
            ('t', "\"2025-07-01T00:00:00Z\"")
        );
        assert_eq!(s[0].hi.as_deref(), Some("\"2025-07-03\""));
        assert_eq!(
            (s[1].axis, s[1].lo.as_str(), s[1].hi.as_deref()),
            ('x', "-13", Some("-12"))
        );
        assert_eq!((s[2].axis, s[2].hi.as_deref()), ('y', None));
        assert!(parse_subsets(["z(1:2)"].into_iter()).is_err());
        assert!(parse_subsets(["x(1:2),x(3)"].into_iter()).is_err());
        assert!(parse_subsets(["x1:2"].into_iter()).is_err());
    }

    #[test]
    fn datetimes_parse_instants_and_open_intervals() {
        assert!(matches!(
            parse_datetime("d", "2025-07-01"),
            Ok(TimeSel::Instant(_))
        ));
        assert!(matches!(
            parse_datetime("d", "../2025-07-03T00:00:00Z"),
            Ok(TimeSel::Interval(None, Some(_)))
        ));
        assert!(matches!(
            parse_datetime("d", "2025-07-01/.."),
            Ok(TimeSel::Interval(Some(_), None))
        ));
        assert!(parse_datetime("d", "2025-07-05/2025-07-01").is_err());
        assert!(parse_datetime("d", "yesterday").is_err());
    }

    #[test]
    fn typed_queries_are_decoded_by_their_declared_names() {
        use crate::routes::ogcapi::coverages::CoverageQuery;
        let raw = |s: &str| Some(s.to_owned());
        let q: CoverageQuery =
            parse_query(raw("scale-factor=4&subset=x(1:2)&subset=y(3:4)&f=png")).expect("valid");
        assert_eq!(q.scale_factor.as_deref(), Some("4"));
        assert_eq!(
            q.subset,
            vec!["x(1:2)", "y(3:4)"],
            "repeatable: every value, in order"
        );
        assert_eq!(q.f.as_deref(), Some("png"));
        assert!(q.bbox.is_none());

        let unknown = parse_query::<CoverageQuery>(raw("scale_factor=4")).expect_err("unknown");
        assert!(
            unknown.message.contains("unknown parameter 'scale_factor'")
                && unknown.message.contains("scale-factor"),
            "{}",
            unknown.message
        );
        let twice = parse_query::<CoverageQuery>(raw("f=png&f=netcdf")).expect_err("twice");
        assert!(
            twice.message.contains("'f' is given more than once"),
            "{}",
            twice.message
        );
        let none: CoverageQuery = parse_query(None).expect("no query");
        assert!(none.subset.is_empty() && none.f.is_none());
    }
}
