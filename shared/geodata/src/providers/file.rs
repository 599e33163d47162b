//! Local files by glob or period template.

use super::*;

/// Local files by glob or period template: `params: {path, variable?, period?}`.
///
/// `path` may contain glob characters (several NetCDF files are merged along time) and the
/// placeholders `{year}`, `{month}`, `{day}`, `{hour}`, which give the period of files without
/// a time axis. Otherwise such files take their period from the `period` param.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileProvider;

const PLACEHOLDERS: [(&str, usize); 4] =
    [("{year}", 4), ("{month}", 2), ("{day}", 2), ("{hour}", 2)];

/// Splits a path template into literal text and placeholders.
#[derive(Debug)]
pub(super) enum Part {
    Lit(String),
    Ph(&'static str, usize),
}

pub(super) fn parse_template(t: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut rest = t;
    'outer: while !rest.is_empty() {
        if let Some(pos) = rest.find('{') {
            for (name, width) in PLACEHOLDERS {
                if rest[pos..].starts_with(name) {
                    if pos > 0 {
                        parts.push(Part::Lit(rest[..pos].to_owned()));
                    }
                    parts.push(Part::Ph(name, width));
                    rest = &rest[pos + name.len()..];
                    continue 'outer;
                }
            }
            parts.push(Part::Lit(rest[..=pos].to_owned()));
            rest = &rest[pos + 1..];
        } else {
            parts.push(Part::Lit(rest.to_owned()));
            break;
        }
    }
    parts
}

/// Extracts placeholder values from a concrete path matching the template. Literal parts may
/// hold glob characters, so only placeholders adjacent to plain literals are supported, which is
/// every practical layout (`…_{year}_1km.tif`, `…/{year}/{month}/x.{year}.{month}.{day}.tif`).
pub(super) fn extract(parts: &[Part], path: &str) -> Option<BTreeMap<&'static str, u32>> {
    let mut values = BTreeMap::new();
    let mut pos = 0;
    for (i, part) in parts.iter().enumerate() {
        match part {
            Part::Lit(l) => {
                if l.contains(['*', '?', '[']) {
                    // Skip a glob literal by finding the next literal after the next placeholder.
                    let next_lit = parts[i + 1..].iter().find_map(|p| match p {
                        Part::Lit(l) => Some(l.as_str()),
                        Part::Ph(..) => None,
                    });
                    let width: usize = match parts.get(i + 1) {
                        Some(Part::Ph(_, w)) => *w,
                        _ => 0,
                    };
                    let after_ph = next_lit.unwrap_or("");
                    // Search from the end for "placeholder digits + next literal".
                    let hay = &path[pos..];
                    let found = (0..=hay.len().saturating_sub(width)).rev().find(|&k| {
                        hay.get(k..k + width)
                            .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
                            && hay[k + width..].starts_with(after_ph)
                    })?;
                    pos += found;
                } else {
                    if !path[pos..].starts_with(l.as_str()) {
                        return None;
                    }
                    pos += l.len();
                }
            }
            Part::Ph(name, width) => {
                let digits = path.get(pos..pos + width)?;
                if !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let v: u32 = digits.parse().ok()?;
                if let Some(prev) = values.insert(*name, v)
                    && prev != v
                {
                    return None;
                }
                pos += width;
            }
        }
    }
    (pos == path.len()).then_some(values)
}

pub(super) fn placeholder_period(
    kind: PeriodType,
    values: &BTreeMap<&'static str, u32>,
) -> Option<Period> {
    let year = i32::try_from(*values.get("{year}")?).ok()?;
    let month = values.get("{month}").copied().unwrap_or(1);
    let day = values.get("{day}").copied().unwrap_or(1);
    let hour = values.get("{hour}").copied().unwrap_or(0);
    let t = NaiveDate::from_ymd_opt(year, month, day)?.and_hms_opt(hour, 0, 0)?;
    Some(Period::containing(kind, t))
}

/// `params` of [`FileProvider`].
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileParams {
    path: Option<String>,
    variable: Option<Text>,
    period: Option<Text>,
}

#[async_trait]
impl TypedProvider for FileProvider {
    const NAME: &'static str = "file";
    type Params = (String, Option<String>, Option<String>);

    fn params(template: &DatasetTemplate) -> Result<Self::Params, ParamError> {
        let p: FileParams = params::decode("file", &template.ingestion.params)?;
        let path = p.path.ok_or_else(|| {
            ParamError::invalid(
                "param 'path' (a file path, glob or {year}/{month}/{day} template) is required",
            )
        })?;
        let text = |t: Option<Text>| t.map(|t| t.0);
        let period = text(p.period);
        if let Some(period) = &period {
            Period::parse(template.period_type, period)
                .map_err(|e| ParamError::invalid(format!("param 'period': {e}")))?;
        }
        Ok((path, text(p.variable), period))
    }

    async fn locate_with(
        &self,
        req: &LocateRequest<'_>,
        params: Self::Params,
    ) -> Result<SourceSet, ProviderError> {
        let (path, variable, period) = params;
        let full = if Path::new(&path).is_absolute() {
            PathBuf::from(&path)
        } else {
            req.base_dir.join(&path)
        };
        // Globbing returns normalised paths; match placeholders against the same form.
        let full = std::path::absolute(&full).unwrap_or(full);
        let full = full.to_string_lossy().into_owned();
        let kind = req.template.period_type;
        let fixed_period = period
            .map(|p| Period::parse(kind, &p).map_err(|e| perm(format!("param 'period': {e}"))))
            .transpose()?;
        locate_files(
            "file",
            full,
            variable.or_else(|| Some(req.template.variable.clone())),
            fixed_period,
            kind,
            req.start,
            req.end,
        )
        .await
    }
}

/// Finds the fields of `start ..= end` (or up to the last available) in local files matching
/// `full` (an absolute path that may hold glob characters and `{year}`-style placeholders).
/// Shared by the providers whose data ends up in local files (`file`, `command`).
pub(super) async fn locate_files(
    provider: &'static str,
    full: String,
    var: Option<String>,
    fixed_period: Option<Period>,
    kind: PeriodType,
    req_start: Period,
    req_end: Option<Period>,
) -> Result<SourceSet, ProviderError> {
    let perm = |message: String| ProviderError::permanent(provider, message);
    let parts = parse_template(&full);
    let has_placeholders = parts.iter().any(|p| matches!(p, Part::Ph(..)));
    let mut pattern = full.clone();
    for (name, width) in PLACEHOLDERS {
        pattern = pattern.replace(name, &"[0-9]".repeat(width));
    }
    // Globbing and decoding headers is blocking file I/O.
    tokio::task::spawn_blocking(move || {
        let files: Vec<PathBuf> = glob::glob(&pattern)
            .map_err(|e| perm(format!("invalid path pattern '{full}': {e}")))?
            .filter_map(Result::ok)
            .collect();
        if files.is_empty() {
            return Err(perm(format!("no file matches '{full}'")));
        }
        let mut steps: BTreeMap<Period, Step> = BTreeMap::new();
        let mut origin: BTreeMap<Period, String> = BTreeMap::new();
        for file in files {
            let file_period = if has_placeholders {
                let values = extract(&parts, &file.to_string_lossy())
                    .ok_or_else(|| perm(format!("{}: does not match '{full}'", file.display())))?;
                Some(placeholder_period(kind, &values).ok_or_else(|| {
                    perm(format!("{}: placeholders do not form a valid date", file.display()))
                })?)
            } else {
                fixed_period
            };
            // Skip files wholly outside the request before decoding them.
            if let Some(p) = file_period
                && (p < req_start || req_end.is_some_and(|e| p > e))
            {
                continue;
            }
            let name = var.clone();
            let source: Arc<dyn RasterSource> = match raster::open(&file, name.as_deref()) {
                Ok(s) => Arc::from(s),
                // The template's variable name is only a hint for NetCDF; retry without it.
                Err(_) if name.is_some() && file_period.is_none() => {
                    Arc::from(raster::open(&file, None).map_err(|e| perm(e.to_string()))?)
                }
                Err(e) => return Err(perm(e.to_string())),
            };
            let found: Vec<(Period, usize)> = if source.times().is_empty() {
                let p = file_period.ok_or_else(|| {
                    perm(format!(
                        "{}: the file has no time axis: set the 'period' param or put {{year}}/{{month}}/{{day}} in the path",
                        file.display()
                    ))
                })?;
                vec![(p, 0)]
            } else {
                source
                    .times()
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (Period::containing(kind, *t), i))
                    .collect()
            };
            for (p, i) in found {
                if p < req_start || req_end.is_some_and(|e| p > e) {
                    continue;
                }
                let here = format!("{} step {i}", file.display());
                if let Some(prev) = origin.insert(p, here.clone()) {
                    return Err(perm(format!(
                        "two source fields fall in {kind} period {p} ({prev} and {here}): the source is finer than the template's period type"
                    )));
                }
                steps.insert(
                    p,
                    Step {
                        source: source.clone(),
                        time_index: i,
                    },
                );
            }
        }
        Ok(SourceSet { steps })
    })
    .await
    .map_err(|e| perm(format!("{provider} provider task failed: {e}")))?
}
