//! Reading the plan as spreadsheets export it: header row, `old_url` and `new_url` columns in any
//! position, optional `status`, other columns ignored (teams keep notes and owners beside the
//! URLs), UTF-8 with or without BOM, quoted fields, CRLF or LF, blank trailing rows.

use super::error::{LoadError, LoadErrors};

/// One data row, borrowed from the reader's buffer.
pub(crate) struct Row<'a> {
    pub line: u32,
    pub old_url: &'a str,
    pub new_url: &'a str,
    pub status: &'a str,
}

struct Columns {
    old: usize,
    new: usize,
    status: Option<usize>,
}

/// Calls `row` for every non-blank data row of `data`, pushing CSV-level problems to `errs`.
/// Returns `false` when the header itself is unusable (nothing else can be checked then).
pub(crate) fn read_rows(
    file: &str,
    data: &[u8],
    errs: &mut LoadErrors,
    mut row: impl FnMut(Row<'_>),
) -> bool {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(data);
    let mut rec = csv::ByteRecord::new();
    let mut lines = LineCounter {
        data,
        pos: 0,
        line: 1,
    };
    let cols = match read_header(file, &mut rdr, &mut rec, errs) {
        Some(c) => c,
        None => return false,
    };
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| line_u32(p.line()));
                errs.push(LoadError::Csv {
                    file: file.into(),
                    line,
                    reason: e.to_string(),
                });
                break;
            }
        }
        let line = rec.position().map_or(0, |p| lines.at(p.byte()));
        if rec.iter().all(|f| f.is_empty()) {
            continue;
        }
        let field = |i: Option<usize>| -> Result<&str, ()> {
            let bytes = i.and_then(|i| rec.get(i)).unwrap_or(b"");
            std::str::from_utf8(bytes).map_err(|_| ())
        };
        match (
            field(Some(cols.old)),
            field(Some(cols.new)),
            field(cols.status),
        ) {
            (Ok(old_url), Ok(new_url), Ok(status)) => row(Row {
                line,
                old_url,
                new_url,
                status,
            }),
            _ => errs.push(LoadError::Utf8 {
                file: file.into(),
                line,
            }),
        }
    }
    true
}

/// Line numbers from byte offsets: the reader's own line count lags by one after a CRLF.
struct LineCounter<'a> {
    data: &'a [u8],
    pos: usize,
    line: u32,
}

impl LineCounter<'_> {
    /// Line of the first content byte at or after `byte` (offsets only grow).
    fn at(&mut self, byte: u64) -> u32 {
        let mut b = usize::try_from(byte)
            .unwrap_or(usize::MAX)
            .min(self.data.len());
        while b < self.data.len() && matches!(self.data[b], b'\r' | b'\n') {
            b += 1;
        }
        if b > self.pos {
            let n = self.data[self.pos..b]
                .iter()
                .filter(|&&c| c == b'\n')
                .count();
            self.line = self
                .line
                .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
            self.pos = b;
        }
        self.line
    }
}

fn line_u32(l: u64) -> u32 {
    u32::try_from(l).unwrap_or(u32::MAX)
}

fn read_header(
    file: &str,
    rdr: &mut csv::Reader<&[u8]>,
    rec: &mut csv::ByteRecord,
    errs: &mut LoadErrors,
) -> Option<Columns> {
    match rdr.read_byte_record(rec) {
        Ok(true) => {}
        Ok(false) => {
            let found = "an empty file".to_string();
            errs.push(LoadError::MissingColumn {
                file: file.into(),
                line: 1,
                column: "old_url",
                found,
            });
            return None;
        }
        Err(e) => {
            errs.push(LoadError::Csv {
                file: file.into(),
                line: 1,
                reason: e.to_string(),
            });
            return None;
        }
    }
    let names: Vec<String> = rec
        .iter()
        .map(|f| String::from_utf8_lossy(f).trim().to_ascii_lowercase())
        .collect();
    let find = |n: &str| names.iter().position(|h| h == n);
    let line = rec.position().map_or(1, |p| line_u32(p.line()));
    let mut missing = |column: &'static str| {
        errs.push(LoadError::MissingColumn {
            file: file.into(),
            line,
            column,
            found: names.join(","),
        })
    };
    match (find("old_url"), find("new_url")) {
        (Some(old), Some(new)) => Some(Columns {
            old,
            new,
            status: find("status"),
        }),
        (old, new) => {
            if old.is_none() {
                missing("old_url");
            }
            if new.is_none() {
                missing("new_url");
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(data: &[u8]) -> (Vec<(u32, String, String, String)>, LoadErrors) {
        let mut errs = LoadErrors::default();
        let mut out = Vec::new();
        read_rows("t.csv", data, &mut errs, |r| {
            out.push((r.line, r.old_url.into(), r.new_url.into(), r.status.into()))
        });
        (out, errs)
    }

    #[test]
    fn spreadsheet_quirks() {
        let data = b"\xEF\xBB\xBFNote,Old_URL , new_url,Status\r\n\
            x,/a,/b,301\r\n\
            \"say \"\"hi\"\", ok\",\"/c,d\",\"/e\",\r\n\
            ,,,\r\n\
            y,/f,/g\r\n";
        let (r, errs) = rows(data);
        assert!(errs.is_empty(), "{errs}");
        assert_eq!(r.len(), 3);
        assert_eq!(r[0], (2, "/a".into(), "/b".into(), "301".into()));
        assert_eq!(r[1], (3, "/c,d".into(), "/e".into(), "".into()));
        assert_eq!(
            r[2],
            (5, "/f".into(), "/g".into(), "".into()),
            "short row: no status"
        );
    }

    #[test]
    fn multi_line_quoted_field_keeps_line_numbers() {
        let (r, _) = rows(b"old_url,new_url,comment\n/a,/b,\"two\nlines\"\n/c,/d,\n");
        assert_eq!(r[0].0, 2);
        assert_eq!(r[1].0, 4);
    }

    #[test]
    fn missing_column_is_named() {
        let (_, errs) = rows(b"from,new_url\n/a,/b\n");
        assert_eq!(errs.errors.len(), 1);
        let msg = errs.errors[0].to_string();
        assert!(
            msg.contains("t.csv:1") && msg.contains("old_url") && msg.contains("from,new_url"),
            "{msg}"
        );
        let (_, errs) = rows(b"");
        assert!(errs.errors[0].to_string().contains("empty file"));
    }

    #[test]
    fn latin1_row_rejected_with_line() {
        let (r, errs) = rows(b"old_url,new_url\n/a,/b\n/caf\xE9,/c\n");
        assert_eq!(r.len(), 1);
        assert_eq!(
            errs.errors[0],
            LoadError::Utf8 {
                file: "t.csv".into(),
                line: 3
            }
        );
    }
}
