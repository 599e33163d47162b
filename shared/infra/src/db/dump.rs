//! Every row of the platform's tables as portable values, read in one consistent snapshot, and
//! written back into an empty database in one transaction: what `climate-api backup` and
//! `restore` keep of the database. Part of [`Database`].
//!
//! The schema is read from the migrations themselves (the portable text, where `{json}` still
//! marks the JSON columns), so a dump knows each column's kind whichever engine wrote it: a dump
//! taken from SQLite restores into PostgreSQL and back. A test compares the parsed schema with
//! what each engine reports.

use super::*;

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    /// `TEXT`.
    Text,
    /// `BIGINT` (and the auto-numbered keys).
    BigInt,
    /// `INTEGER` (32-bit on PostgreSQL).
    Int,
    /// `BOOLEAN`.
    Bool,
    /// The engine's JSON column.
    Json,
}

/// A column of a table, as the migrations declare it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// What it holds.
    pub kind: ColumnKind,
}

/// A table of the schema: its columns in declaration order, and its auto-numbered key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Its name.
    pub name: String,
    /// Its columns (those added later at the end).
    pub columns: Vec<Column>,
    /// The auto-numbered column, whose sequence a restore moves past the restored rows.
    pub serial: Option<String>,
}

/// The tables of the schema in creation order (which respects every foreign key), with their
/// columns, parsed from the migrations.
pub fn schema() -> Vec<Table> {
    let mut tables: Vec<Table> = Vec::new();
    let mut current: Option<usize> = None;
    for (_, _, sql) in MIGRATIONS {
        for line in sql.lines() {
            let line = line.split("--").next().unwrap_or("").trim();
            if let Some(rest) = line.strip_prefix("CREATE TABLE ") {
                let name = rest.trim_end_matches('(').trim().to_owned();
                tables.push(Table {
                    name,
                    columns: Vec::new(),
                    serial: None,
                });
                current = Some(tables.len() - 1);
            } else if let Some(rest) = line.strip_prefix("ALTER TABLE ") {
                let mut words = rest.split_whitespace();
                let table = words.next().unwrap_or_default();
                let rest: Vec<&str> = words.collect();
                if let ["ADD", "COLUMN", name, ty, ..] = rest.as_slice()
                    && let Some(t) = tables.iter_mut().find(|t| t.name == table)
                {
                    push_column(t, name, ty.trim_end_matches(';'));
                }
            } else if line.starts_with(')') {
                current = None;
            } else if let Some(t) = current.map(|i| &mut tables[i]) {
                let mut words = line.split_whitespace();
                let (Some(name), Some(ty)) = (words.next(), words.next()) else {
                    continue;
                };
                if matches!(
                    name,
                    "PRIMARY" | "UNIQUE" | "FOREIGN" | "CHECK" | "CONSTRAINT"
                ) {
                    continue;
                }
                push_column(t, name, ty.trim_end_matches(','));
            }
        }
    }
    tables
}

fn push_column(t: &mut Table, name: &str, ty: &str) {
    let kind = match ty {
        "TEXT" => ColumnKind::Text,
        "INTEGER" => ColumnKind::Int,
        "BOOLEAN" => ColumnKind::Bool,
        "{json}" => ColumnKind::Json,
        "{serial_key}" => {
            t.serial = Some(name.to_owned());
            ColumnKind::BigInt
        }
        // BIGINT, and anything a later migration spells otherwise: a test compares the parse
        // with each engine's own account of its columns.
        _ => ColumnKind::BigInt,
    };
    t.columns.push(Column {
        name: name.to_owned(),
        kind,
    });
}

/// The rows of one table: its columns and, per row, one value per column (`null`, a string, a
/// number, a boolean, or the JSON document of a JSON column).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableRows {
    /// The table.
    pub table: String,
    /// Its columns, in the order of each row's values.
    pub columns: Vec<Column>,
    /// The rows.
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// A consistent snapshot of every table.
#[derive(Debug, Clone, PartialEq)]
pub struct Dump {
    /// The newest migration applied to the database it came from.
    pub schema_version: i64,
    /// The tables in creation order.
    pub tables: Vec<TableRows>,
}

/// Why a dump could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The target already holds rows (and replacing them was not asked for).
    #[error(
        "the target database is not empty (table {table} has {rows} rows); restore into a fresh database, or pass --replace to delete what it holds first"
    )]
    NotEmpty {
        /// The first table with rows.
        table: String,
        /// How many.
        rows: i64,
    },
    /// The dump names a table or column this release does not have (it comes from a newer one).
    #[error(
        "the backup has {0}, which this release's schema does not have: restore it with the release that took it, or a newer one"
    )]
    Unknown(String),
    /// A value does not fit its column.
    #[error("table {table}, column {column}: {message}")]
    BadValue {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// What is wrong.
        message: String,
    },
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for LoadError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e.into())
    }
}

/// Dumping and loading every table. Part of [`Database`].
#[async_trait]
pub trait DumpStore: Send + Sync {
    /// Every row of every table, read in one snapshot (one read-only transaction).
    async fn dump(&self) -> DbResult<Dump>;
    /// Writes `dump` in one transaction into a database that holds no rows, or — with
    /// `replace` — deletes every row first. Returns the number of rows written.
    async fn load(&self, dump: &Dump, replace: bool) -> Result<u64, LoadError>;
    /// The columns each table has, as the engine reports them (name, the engine's type).
    async fn columns(&self) -> DbResult<Vec<(String, Vec<(String, String)>)>>;
}

/// Checks that `rows`' columns exist in `table` with the same kinds.
fn check_columns(rows: &TableRows, table: Option<&Table>) -> Result<(), LoadError> {
    let table = table.ok_or_else(|| LoadError::Unknown(format!("table {}", rows.table)))?;
    for c in &rows.columns {
        match table.columns.iter().find(|t| t.name == c.name) {
            Some(t) if t.kind == c.kind => {}
            Some(t) => {
                return Err(LoadError::BadValue {
                    table: rows.table.clone(),
                    column: c.name.clone(),
                    message: format!("the backup holds {:?}, this schema {:?}", c.kind, t.kind),
                });
            }
            None => {
                return Err(LoadError::Unknown(format!(
                    "column {}.{}",
                    rows.table, c.name
                )));
            }
        }
    }
    Ok(())
}

fn bad(table: &str, column: &Column, v: &serde_json::Value) -> LoadError {
    LoadError::BadValue {
        table: table.to_owned(),
        column: column.name.clone(),
        message: format!("{v} is not a {:?} value", column.kind),
    }
}

macro_rules! impl_dump {
    ($name:ident, $db:ty, $columns_sql:literal, $begin_snapshot:literal) => {
        impl $name {
            /// Reads column `i` of `row` as the portable value of its kind.
            fn value(
                row: &<$db as sqlx::Database>::Row,
                i: usize,
                kind: ColumnKind,
            ) -> DbResult<serde_json::Value> {
                use serde_json::Value;
                Ok(match kind {
                    ColumnKind::Text => row
                        .try_get::<Option<String>, _>(i)?
                        .map_or(Value::Null, Value::from),
                    ColumnKind::BigInt => row
                        .try_get::<Option<i64>, _>(i)?
                        .map_or(Value::Null, Value::from),
                    ColumnKind::Int => row
                        .try_get::<Option<i32>, _>(i)?
                        .map_or(Value::Null, Value::from),
                    ColumnKind::Bool => row
                        .try_get::<Option<bool>, _>(i)?
                        .map_or(Value::Null, Value::from),
                    ColumnKind::Json => Self::json_value(row, i)?,
                })
            }
        }

        #[async_trait]
        impl DumpStore for $name {
            async fn dump(&self) -> DbResult<Dump> {
                let mut tx = self.pool.begin().await?;
                if !$begin_snapshot.is_empty() {
                    sqlx::query($begin_snapshot).execute(&mut *tx).await?;
                }
                let schema_version: i64 = sqlx::query_scalar(
                    "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success",
                )
                .fetch_one(&mut *tx)
                .await?;
                let mut tables = Vec::new();
                for t in schema() {
                    let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
                    let sql = format!("SELECT {} FROM {}", names.join(", "), t.name);
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .fetch_all(&mut *tx)
                        .await?;
                    let mut values = Vec::with_capacity(rows.len());
                    for row in &rows {
                        values.push(
                            t.columns
                                .iter()
                                .enumerate()
                                .map(|(i, c)| Self::value(row, i, c.kind))
                                .collect::<DbResult<Vec<_>>>()?,
                        );
                    }
                    tables.push(TableRows {
                        table: t.name,
                        columns: t.columns,
                        rows: values,
                    });
                }
                tx.commit().await?;
                Ok(Dump {
                    schema_version,
                    tables,
                })
            }

            async fn load(&self, dump: &Dump, replace: bool) -> Result<u64, LoadError> {
                let schema = schema();
                for rows in &dump.tables {
                    check_columns(rows, schema.iter().find(|t| t.name == rows.table))?;
                }
                let mut tx = self.pool.begin().await?;
                for t in schema.iter().rev() {
                    if replace {
                        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {}", t.name)))
                            .execute(&mut *tx)
                            .await?;
                    } else {
                        let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                            "SELECT COUNT(*) FROM {}",
                            t.name
                        )))
                        .fetch_one(&mut *tx)
                        .await?;
                        if rows > 0 {
                            return Err(LoadError::NotEmpty {
                                table: t.name.clone(),
                                rows,
                            });
                        }
                    }
                }
                let mut written = 0;
                // Creation order: a row's foreign keys are in by the time it is written.
                for t in &schema {
                    let Some(rows) = dump.tables.iter().find(|r| r.table == t.name) else {
                        continue;
                    };
                    let names: Vec<&str> = rows.columns.iter().map(|c| c.name.as_str()).collect();
                    let marks: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
                    let sql = format!(
                        "INSERT INTO {} ({}) VALUES ({})",
                        t.name,
                        names.join(", "),
                        marks.join(", ")
                    );
                    for row in &rows.rows {
                        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
                        for (c, v) in rows.columns.iter().zip(row) {
                            q = match c.kind {
                                ColumnKind::Text => q.bind(match v {
                                    serde_json::Value::Null => None,
                                    serde_json::Value::String(s) => Some(s.clone()),
                                    _ => return Err(bad(&t.name, c, v)),
                                }),
                                ColumnKind::BigInt => q.bind(match v {
                                    serde_json::Value::Null => None,
                                    _ => Some(v.as_i64().ok_or_else(|| bad(&t.name, c, v))?),
                                }),
                                ColumnKind::Int => q.bind(match v {
                                    serde_json::Value::Null => None,
                                    _ => Some(
                                        v.as_i64()
                                            .and_then(|v| i32::try_from(v).ok())
                                            .ok_or_else(|| bad(&t.name, c, v))?,
                                    ),
                                }),
                                ColumnKind::Bool => q.bind(match v {
                                    serde_json::Value::Null => None,
                                    _ => Some(v.as_bool().ok_or_else(|| bad(&t.name, c, v))?),
                                }),
                                ColumnKind::Json => Self::bind_json(q, v),
                            };
                        }
                        q.execute(&mut *tx).await?;
                        written += 1;
                    }
                    if let Some(serial) = &t.serial {
                        Self::advance_serial(&mut tx, &t.name, serial).await?;
                    }
                }
                tx.commit().await?;
                Ok(written)
            }

            async fn columns(&self) -> DbResult<Vec<(String, Vec<(String, String)>)>> {
                let mut out = Vec::new();
                for t in schema() {
                    let cols: Vec<(String, String)> = sqlx::query_as($columns_sql)
                        .bind(&t.name)
                        .fetch_all(&self.pool)
                        .await?;
                    out.push((t.name, cols));
                }
                Ok(out)
            }
        }
    };
}

impl SqliteDb {
    fn json_value(row: &sqlx::sqlite::SqliteRow, i: usize) -> DbResult<serde_json::Value> {
        row.try_get::<Option<String>, _>(i)?
            .map_or(Ok(serde_json::Value::Null), |s| {
                serde_json::from_str(&s).map_err(|e| DbError::Corrupt(format!("JSON column: {e}")))
            })
    }

    fn bind_json<'q>(
        q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
        v: &serde_json::Value,
    ) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
        q.bind((!v.is_null()).then(|| v.to_string()))
    }

    async fn advance_serial(
        _tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        _table: &str,
        _column: &str,
    ) -> DbResult<()> {
        // AUTOINCREMENT keys move past explicitly inserted ones by themselves.
        Ok(())
    }
}

impl PostgresDb {
    fn json_value(row: &sqlx::postgres::PgRow, i: usize) -> DbResult<serde_json::Value> {
        Ok(row
            .try_get::<Option<Json<serde_json::Value>>, _>(i)?
            .map_or(serde_json::Value::Null, |j| j.0))
    }

    fn bind_json<'q>(
        q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
        v: &serde_json::Value,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        q.bind((!v.is_null()).then(|| Json(v.clone())))
    }

    async fn advance_serial(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        table: &str,
        column: &str,
    ) -> DbResult<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
             COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
        )))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

impl_dump!(
    SqliteDb,
    sqlx::Sqlite,
    "SELECT name, type FROM pragma_table_info($1) ORDER BY cid",
    ""
);
impl_dump!(
    PostgresDb,
    sqlx::Postgres,
    "SELECT column_name::TEXT, data_type::TEXT FROM information_schema.columns \
     WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_read_from_the_migrations_with_each_columns_kind() {
        let tables = schema();
        let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names[..3],
            ["managed_datasets", "dataset_versions", "ingestion_runs"]
        );
        assert!(names.contains(&"catalog_events"), "{names:?}");
        let versions = &tables[1];
        let kind = |t: &Table, c: &str| t.columns.iter().find(|x| x.name == c).map(|x| x.kind);
        assert_eq!(kind(versions, "metadata"), Some(ColumnKind::Json));
        assert_eq!(
            kind(versions, "held"),
            Some(ColumnKind::Bool),
            "added by 0010"
        );
        assert_eq!(kind(versions, "version"), Some(ColumnKind::BigInt));
        let runs = &tables[2];
        assert_eq!(kind(runs, "plan"), Some(ColumnKind::Json), "added by 0002");
        assert_eq!(kind(runs, "attempts"), Some(ColumnKind::Int));
        assert_eq!(
            runs.columns.last().map(|c| c.name.as_str()),
            Some("principal")
        );
        let events = tables
            .iter()
            .find(|t| t.name == "catalog_events")
            .expect("events");
        assert_eq!(events.serial.as_deref(), Some("event_id"));
        assert!(tables.iter().all(|t| !t.columns.is_empty()));
    }
}
