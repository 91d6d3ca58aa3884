//! The model's snapshot tables as Parquet: `title_measures`, `shows`,
//! `channels` (one row per node, every measure) and `trending` (the
//! rankings). Deterministic byte for byte like the `titles` table.

use std::ops::Range;
use std::sync::Arc;

use parquet::basic::{Compression, Encoding};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::Field;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;

use crate::core::error::{Error, Result};
use crate::core::event::REGIONS;
use crate::core::model::{NodeRow, TopEntry, DEVICE_NAMES, N_BREAKDOWN, TIER_NAMES};
use crate::core::time::Millis;

/// Per-title measures (episodes, movies, live events, clips, unknown ids).
pub const TITLE_MEASURES: &str = "title_measures";
/// Shows, rolled up from their episodes.
pub const SHOWS: &str = "shows";
/// Channels, rolled up from everything below them.
pub const CHANNELS: &str = "channels";
/// The rankings.
pub const TRENDING: &str = "trending";
/// The model's tables, in publication order.
pub const MODEL_TABLES: [&str; 4] = [TITLE_MEASURES, SHOWS, CHANNELS, TRENDING];

/// Which node table a row belongs to.
pub fn table_of(row: &NodeRow) -> &'static str {
    match row.kind {
        Some(crate::core::catalog::Kind::Show) => SHOWS,
        Some(crate::core::catalog::Kind::Channel) => CHANNELS,
        _ => TITLE_MEASURES,
    }
}

enum Col {
    I64(String, Vec<i64>),
    OptI64(String, Vec<Option<i64>>),
    F64(String, Vec<f64>),
    Str(String, Vec<ByteArray>),
    Ts(String, Vec<i64>),
}

impl Col {
    fn schema(&self) -> String {
        match self {
            Col::I64(n, _) => format!("  REQUIRED INT64 {n};\n"),
            Col::OptI64(n, _) => format!("  OPTIONAL INT64 {n};\n"),
            Col::F64(n, _) => format!("  REQUIRED DOUBLE {n};\n"),
            Col::Str(n, _) => format!("  REQUIRED BYTE_ARRAY {n} (UTF8);\n"),
            Col::Ts(n, _) => format!("  REQUIRED INT64 {n} (TIMESTAMP(MILLIS,true));\n"),
        }
    }
}

fn perr(what: &str, e: parquet::errors::ParquetError) -> Error {
    Error::Internal(format!("parquet {what}: {e}"))
}

/// Rows per row group: a part is encoded a group at a time, so a shard of
/// a million titles never holds all its columns at once (about 200 bytes a
/// row, again in the encoder's pages).
const GROUP_ROWS: usize = 65_536;

/// Columns whose row groups and pages keep their minimum and maximum.
const FILTERED: [&str; 5] = ["content_id", "parent", "rank", "window_start", "window_end"];

/// Encodes `rows` rows, one row group per [`GROUP_ROWS`], each group's
/// columns made by `cols_of` from its range of rows.
fn encode(name: &str, rows: usize, cols_of: impl Fn(Range<usize>) -> Vec<Col>) -> Result<Vec<u8>> {
    let text = format!(
        "message {name} {{\n{}}}\n",
        cols_of(0..0).iter().map(Col::schema).collect::<String>()
    );
    let schema = Arc::new(parse_message_type(&text).map_err(|e| perr("schema", e))?);
    let mut props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_created_by(concat!("popularity ", env!("CARGO_PKG_VERSION")).to_string());
    // Integers are delta-encoded and floats plain: a dictionary hashes
    // every value (most of the writer's time), and ids in order and small
    // counts pack into a few bits a value without one.
    // Min and max are kept for what a reader filters on (ids, in order,
    // the parent, a rank, the window; text columns keep theirs), not for
    // the counts, whose every row group spans nearly all values: they cost
    // 5 % of a Kafka job's CPU.
    for col in cols_of(0..0) {
        let (name, delta) = match &col {
            Col::I64(n, _) | Col::OptI64(n, _) | Col::Ts(n, _) => (n, true),
            Col::F64(n, _) => (n, false),
            Col::Str(..) => continue,
        };
        let path = ColumnPath::from(name.as_str());
        if !FILTERED.contains(&name.as_str()) {
            props = props.set_column_statistics_enabled(path.clone(), EnabledStatistics::None);
        }
        props = props.set_column_dictionary_enabled(path.clone(), false);
        if delta {
            props = props.set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
        }
    }
    let props = Arc::new(props.build());
    let mut buf = Vec::new();
    {
        let mut writer =
            SerializedFileWriter::new(&mut buf, schema, props).map_err(|e| perr("writer", e))?;
        let mut start = 0;
        loop {
            let end = (start + GROUP_ROWS).min(rows);
            write_group(&mut writer, &cols_of(start..end))?;
            start = end;
            if start >= rows {
                break;
            }
        }
        writer.close().map_err(|e| perr("close file", e))?;
    }
    Ok(buf)
}

/// Writes one row group of `cols`.
fn write_group(writer: &mut SerializedFileWriter<&mut Vec<u8>>, cols: &[Col]) -> Result<()> {
    let mut group = writer.next_row_group().map_err(|e| perr("row group", e))?;
    for col in cols {
        let Some(mut w) = group.next_column().map_err(|e| perr("column", e))? else {
            return Err(Error::Internal("parquet schema has fewer columns".into()));
        };
        match col {
            Col::I64(_, v) | Col::Ts(_, v) => w.typed::<Int64Type>().write_batch(v, None, None),
            Col::OptI64(_, v) => {
                let present: Vec<i64> = v.iter().flatten().copied().collect();
                let defs: Vec<i16> = v.iter().map(|x| x.is_some() as i16).collect();
                w.typed::<Int64Type>()
                    .write_batch(&present, Some(&defs), None)
            }
            Col::F64(_, v) => w.typed::<DoubleType>().write_batch(v, None, None),
            Col::Str(_, v) => w.typed::<ByteArrayType>().write_batch(v, None, None),
        }
        .map_err(|e| perr("write", e))?;
        w.close().map_err(|e| perr("close column", e))?;
    }
    group.close().map_err(|e| perr("close row group", e))?;
    Ok(())
}

/// Encodes node rows (one node table's part) of the window `[start, end)`.
pub fn encode_nodes(table: &str, rows: &[&NodeRow], start: Millis, end: Millis) -> Result<Vec<u8>> {
    encode(table, rows.len(), |range| {
        node_cols(&rows[range], start, end)
    })
}

/// The columns of node rows, in one pass over the rows: a row group is
/// 65 536 rows of 152 bytes, and a pass per column read them 28 times.
fn node_cols(rows: &[&NodeRow], start: Millis, end: Millis) -> Vec<Col> {
    let n = rows.len();
    // content_id, views, watch_ms, views_24h, score_ppm, then the breakdown.
    let mut ints: Vec<Vec<i64>> = (0..5 + N_BREAKDOWN)
        .map(|_| Vec::with_capacity(n))
        .collect();
    let (mut kinds, mut parents) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut trends, mut decays) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for r in rows {
        let head = [
            r.id as i64,
            r.m.views,
            r.m.watch_ms,
            r.m.views_24h,
            r.score_ppm,
        ];
        // Chained by reference: chaining the arrays by value copied both
        // into the iterator for every row.
        let cells = r.m.breakdown();
        for (col, v) in ints.iter_mut().zip(head.iter().chain(&cells)) {
            col.push(*v);
        }
        let kind = r.kind.map_or("unknown", |k| k.as_str());
        kinds.push(ByteArray::from(bytes::Bytes::from_static(kind.as_bytes())));
        parents.push(r.parent.map(|p| p as i64));
        trends.push(r.trend());
        decays.push(r.decay);
    }
    let mut ints = ints.into_iter();
    let mut int = |name: &str| {
        Col::I64(
            name.to_string(),
            ints.next()
                .expect("a vector per integer column (a bug if not)"),
        )
    };
    let mut cols = vec![
        int("content_id"),
        Col::Str("kind".into(), kinds),
        Col::OptI64("parent".into(), parents),
        int("views"),
        int("watch_ms"),
        int("views_24h"),
        int("score_ppm"),
        Col::F64("trend".into(), trends),
        Col::F64("decay".into(), decays),
    ];
    let regions = REGIONS.map(|c| c.to_lowercase().replace('-', "_"));
    let fixed = TIER_NAMES
        .iter()
        .chain(&DEVICE_NAMES)
        .map(|n| n.to_string());
    for name in fixed.chain(regions) {
        cols.push(int(&format!("views_{name}")));
    }
    cols.push(Col::Ts("window_start".into(), vec![start; n]));
    cols.push(Col::Ts("window_end".into(), vec![end; n]));
    cols
}

/// Encodes the rankings of the window `[start, end)`.
pub fn encode_trending(entries: &[TopEntry], start: Millis, end: Millis) -> Result<Vec<u8>> {
    encode(TRENDING, entries.len(), |range| {
        let entries = &entries[range];
        vec![
            Col::Str(
                "category".into(),
                entries.iter().map(|e| e.category.as_str().into()).collect(),
            ),
            Col::Str(
                "region".into(),
                entries.iter().map(|e| e.region.as_str().into()).collect(),
            ),
            Col::I64(
                "rank".into(),
                entries.iter().map(|e| e.rank as i64).collect(),
            ),
            Col::I64(
                "content_id".into(),
                entries.iter().map(|e| e.id as i64).collect(),
            ),
            Col::F64("value".into(), entries.iter().map(|e| e.value).collect()),
            Col::Ts("window_start".into(), vec![start; entries.len()]),
            Col::Ts("window_end".into(), vec![end; entries.len()]),
        ]
    })
}

/// One decoded value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Integers and timestamps (ms).
    Int(i64),
    /// Doubles.
    Float(f64),
    /// Strings.
    Text(String),
    /// An absent optional value.
    Null,
}

impl Value {
    /// The integer, or 0.
    pub fn int(&self) -> i64 {
        match self {
            Value::Int(v) => *v,
            _ => 0,
        }
    }
    /// The number as a double.
    pub fn float(&self) -> f64 {
        match self {
            Value::Float(v) => *v,
            Value::Int(v) => *v as f64,
            _ => 0.0,
        }
    }
    /// The string, or empty.
    pub fn text(&self) -> &str {
        match self {
            Value::Text(s) => s,
            _ => "",
        }
    }
}

/// A decoded row: column name → value.
pub type Row = std::collections::BTreeMap<String, Value>;

/// Decodes any of the model's tables into rows of named values.
pub fn decode_rows(bytes: Vec<u8>) -> Result<Vec<Row>> {
    let reader = SerializedFileReader::new(bytes::Bytes::from(bytes))
        .map_err(|e| Error::Input(format!("not a parquet file: {e}")))?;
    let rows = reader
        .get_row_iter(None)
        .map_err(|e| Error::Input(format!("parquet rows: {e}")))?;
    let mut out = Vec::new();
    for row in rows {
        let row = row.map_err(|e| Error::Input(format!("parquet row: {e}")))?;
        out.push(
            row.get_column_iter()
                .map(|(name, field)| {
                    let v = match field {
                        Field::Long(v) => Value::Int(*v),
                        Field::TimestampMillis(v) => Value::Int(*v),
                        Field::Double(v) => Value::Float(*v),
                        Field::Str(s) => Value::Text(s.clone()),
                        Field::Null => Value::Null,
                        other => Value::Text(other.to_string()),
                    };
                    (name.clone(), v)
                })
                .collect(),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::Measures;

    #[test]
    fn node_and_trending_tables_round_trip_deterministically() {
        // More rows than a row group holds: two groups, read back as one table.
        let n = GROUP_ROWS as u64 + 100;
        let rows: Vec<NodeRow> = (0..n)
            .map(|i| NodeRow {
                id: i,
                kind: (i % 3 != 0).then_some(crate::core::catalog::Kind::Episode),
                parent: (i % 3 != 0 && i % 2 == 0).then_some(7),
                m: Measures {
                    views: i as i64,
                    region: [i as i64; 12],
                    ..Measures::default()
                }
                .into(),
                score_ppm: 5,
                decay: 0.5,
            })
            .collect();
        let refs: Vec<&NodeRow> = rows.iter().collect();
        let a = encode_nodes(TITLE_MEASURES, &refs, 10, 20).expect("encodes");
        assert_eq!(
            a,
            encode_nodes(TITLE_MEASURES, &refs, 10, 20).expect("encodes")
        );
        let back = decode_rows(a).expect("decodes");
        assert_eq!(back.len(), n as usize);
        let last = n as usize - 1;
        assert_eq!(back[last]["views"], Value::Int(last as i64));
        assert_eq!(back[last]["content_id"], Value::Int(last as i64));
        assert_eq!(back[4]["views"], Value::Int(4));
        assert_eq!(back[4]["parent"], Value::Int(7));
        assert_eq!(back[3]["parent"], Value::Null);
        assert_eq!(back[3]["kind"], Value::Text("unknown".into()));
        assert_eq!(back[5]["views_in_mh"], Value::Int(5));
        assert_eq!(back[6]["trend"], Value::Float(3.0));
        let top = crate::core::model::rank_all(&rows, 3);
        let t = decode_rows(encode_trending(&top, 10, 20).expect("encodes")).expect("decodes");
        assert_eq!(t.len(), top.len());
        assert!(decode_rows(b"nope".to_vec()).is_err());
    }
}
