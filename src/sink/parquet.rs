//! Parquet encoding of snapshot tables, deterministic byte for byte.
//!
//! Same rows in, same bytes out: fixed schema, fixed writer properties, no
//! timestamps in the metadata, rows in content-id order.

use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::Int64Type;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::RowAccessor;
use parquet::schema::parser::parse_message_type;

use crate::core::error::{Error, Result};
use crate::core::event::ContentId;
use crate::core::time::Millis;

/// Schema of the `titles` table.
pub const TITLES_SCHEMA: &str = "
message titles {
  REQUIRED INT64 content_id;
  REQUIRED INT64 views;
  REQUIRED INT64 window_start (TIMESTAMP(MILLIS,true));
  REQUIRED INT64 window_end (TIMESTAMP(MILLIS,true));
}
";

/// One row of the `titles` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TitleRow {
    /// The title.
    pub content_id: ContentId,
    /// `started_video` events in the window.
    pub views: i64,
    /// First ms of the window.
    pub window_start: Millis,
    /// First ms after the window.
    pub window_end: Millis,
}

fn perr(what: &str, e: parquet::errors::ParquetError) -> Error {
    Error::Internal(format!("parquet {what}: {e}"))
}

/// Encodes rows as one Parquet file.
pub fn encode_titles(rows: &[TitleRow]) -> Result<Vec<u8>> {
    let schema = Arc::new(parse_message_type(TITLES_SCHEMA).map_err(|e| perr("schema", e))?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(concat!("popularity ", env!("CARGO_PKG_VERSION")).to_string())
            .build(),
    );
    let mut buf = Vec::with_capacity(rows.len() * 12 + 1024);
    {
        let mut writer =
            SerializedFileWriter::new(&mut buf, schema, props).map_err(|e| perr("writer", e))?;
        let mut group = writer.next_row_group().map_err(|e| perr("row group", e))?;
        let columns: [Vec<i64>; 4] = [
            rows.iter().map(|r| r.content_id as i64).collect(),
            rows.iter().map(|r| r.views).collect(),
            rows.iter().map(|r| r.window_start).collect(),
            rows.iter().map(|r| r.window_end).collect(),
        ];
        for values in &columns {
            let Some(mut col) = group.next_column().map_err(|e| perr("column", e))? else {
                return Err(Error::Internal(
                    "parquet schema has fewer columns than the writer".into(),
                ));
            };
            col.typed::<Int64Type>()
                .write_batch(values, None, None)
                .map_err(|e| perr("write", e))?;
            col.close().map_err(|e| perr("close column", e))?;
        }
        group.close().map_err(|e| perr("close row group", e))?;
        writer.close().map_err(|e| perr("close file", e))?;
    }
    Ok(buf)
}

/// Decodes a `titles` Parquet file.
pub fn decode_titles(bytes: Vec<u8>) -> Result<Vec<TitleRow>> {
    let size = bytes.len();
    let reader = SerializedFileReader::new(bytes::Bytes::from(bytes))
        .map_err(|e| Error::Input(format!("not a parquet file: {e}")))?;
    // The row count is the file's claim: reserve no more than its bytes allow.
    let claimed = reader.metadata().file_metadata().num_rows().max(0) as usize;
    let mut out = Vec::with_capacity(claimed.min(size));
    let rows = reader
        .get_row_iter(None)
        .map_err(|e| Error::Input(format!("parquet rows: {e}")))?;
    for row in rows {
        let row = row.map_err(|e| Error::Input(format!("parquet row: {e}")))?;
        let get = |i: usize| -> Result<i64> {
            row.get_long(i)
                .or_else(|_| row.get_timestamp_millis(i))
                .map_err(|e| Error::Input(format!("parquet column {i}: {e}")))
        };
        out.push(TitleRow {
            content_id: get(0)? as ContentId,
            views: get(1)?,
            window_start: get(2)?,
            window_end: get(3)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_deterministic() {
        let rows: Vec<TitleRow> = (0..5000)
            .map(|i| TitleRow {
                content_id: i * 3,
                views: (i % 17) as i64 + 1,
                window_start: 1000,
                window_end: 2000,
            })
            .collect();
        let a = encode_titles(&rows).expect("encodes");
        let b = encode_titles(&rows).expect("encodes");
        assert_eq!(a, b, "same rows, same bytes");
        assert_eq!(&a[..4], b"PAR1");
        assert_eq!(decode_titles(a).expect("decodes"), rows);
        assert_eq!(
            decode_titles(encode_titles(&[]).expect("encodes")).expect("decodes"),
            vec![]
        );
        assert!(decode_titles(b"PAR1 nonsense".to_vec()).is_err());
    }
}
