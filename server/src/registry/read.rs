//! Reading a meters file row by row, whatever its size: CSV with a header row, a JSON array of
//! objects, or NDJSON (one object per line). Each row is handed on as it is read, with the line
//! it starts on; nothing of the file is kept but the reader's buffer.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read};
use std::ops::ControlFlow;
use std::rc::Rc;

use anyhow::{Context, Result};
use serde::de::{DeserializeSeed, Deserializer, Error as _, SeqAccess, Visitor};

use super::rows::{Columns, Row, json_row};

/// How a meters file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON array of objects.
    JsonArray,
    /// One JSON object per line (NDJSON, JSON Lines).
    JsonLines,
}

impl Format {
    /// The format of a file: JSON when its first character is `[` (an array) or `{` (one
    /// object per line), CSV otherwise.
    pub fn sniff(reader: &mut impl BufRead) -> io::Result<Format> {
        loop {
            let buf = reader.fill_buf()?;
            let Some(&first) = buf.iter().find(|b| !b.is_ascii_whitespace()) else {
                if buf.is_empty() {
                    return Ok(Format::Csv);
                }
                // Only blanks so far: they are not part of any row.
                let n = buf.len();
                reader.consume(n);
                continue;
            };
            return Ok(match first {
                b'[' => Format::JsonArray,
                b'{' => Format::JsonLines,
                _ => Format::Csv,
            });
        }
    }
}

/// Reads every row of `reader`, handing each to `each` until it breaks. A JSON array that
/// stops being JSON ends the reading with a last row error at the place it broke (the rows
/// before it are handed on already); a file that cannot be read is an error.
pub fn rows(reader: impl Read, mut each: impl FnMut(Row) -> ControlFlow<()>) -> Result<()> {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    match Format::sniff(&mut reader).context("reading the file")? {
        Format::Csv => csv_rows(reader, each),
        Format::JsonLines => json_lines(reader, each),
        Format::JsonArray => {
            let lines = LineCounter::new(reader);
            let line = lines.line.clone();
            let mut de = serde_json::Deserializer::from_reader(lines);
            let outcome = de
                .deserialize_seq(Elements {
                    line: line.clone(),
                    each: &mut each,
                })
                .and_then(|()| de.end());
            match outcome {
                Ok(()) => Ok(()),
                Err(e) if e.is_io() => Err(e).context("reading the file"),
                // The consumer stopped: nothing to report.
                Err(e) if e.to_string().starts_with(STOPPED) => Ok(()),
                Err(e) => {
                    let _ = each(Row::refused(
                        e.line(),
                        format!(
                            "the file stops being a JSON array of objects here \
                             (column {}: {}); nothing after it was read",
                            e.column(),
                            strip_position(&e)
                        ),
                    ));
                    Ok(())
                }
            }
        }
    }
}

/// serde_json's message without the " at line L column C" it appends.
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// The message of the error that stops a JSON array when the consumer breaks.
const STOPPED: &str = "import stopped";

fn csv_rows(reader: impl Read, mut each: impl FnMut(Row) -> ControlFlow<()>) -> Result<()> {
    let mut csv = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(LineStarts::new(reader));
    let headers = csv
        .byte_headers()
        .context("reading the CSV header")?
        .clone();
    let names = headers
        .iter()
        .map(std::str::from_utf8)
        .collect::<Result<Vec<_>, _>>()
        .context("line 1: the header is not UTF-8")?;
    let columns = Columns::parse(names.iter().map(|n| n.trim())).map_err(anyhow::Error::msg)?;
    let mut record = csv::ByteRecord::new();
    while csv
        .read_byte_record(&mut record)
        .context("reading the CSV")?
    {
        let start = record.position().map_or(0, csv::Position::byte);
        let line = csv.get_mut().line_at(start);
        let row = columns.row(line, record.iter().map(std::str::from_utf8));
        if each(row).is_break() {
            break;
        }
    }
    Ok(())
}

fn json_lines(reader: impl BufRead, mut each: impl FnMut(Row) -> ControlFlow<()>) -> Result<()> {
    let mut line = 0;
    for text in reader.split(b'\n') {
        let text = text.context("reading the file")?;
        line += 1;
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let row = match serde_json::from_slice(&text) {
            Ok(value) => json_row(line, value),
            Err(e) => Row::refused(
                line,
                format!("is not a JSON object: {}", strip_position(&e)),
            ),
        };
        if each(row).is_break() {
            break;
        }
    }
    Ok(())
}

/// Hands each element of a JSON array on as it is parsed, so that the array is never whole in
/// memory.
struct Elements<'a, F> {
    line: Rc<Cell<usize>>,
    each: &'a mut F,
}

impl<'de, F: FnMut(Row) -> ControlFlow<()>> Visitor<'de> for Elements<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of meter objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some((line, value)) = seq.next_element_seed(Located(self.line.clone()))? {
            if (self.each)(json_row(line, value)).is_break() {
                return Err(A::Error::custom(STOPPED));
            }
        }
        Ok(())
    }
}

/// One array element with the line it starts on: serde_json has read up to the element's first
/// character (to see that it is not `]`) when it asks for the element.
struct Located(Rc<Cell<usize>>);

impl<'de> DeserializeSeed<'de> for Located {
    type Value = (usize, serde_json::Value);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let line = self.0.get();
        serde::Deserialize::deserialize(d).map(|v| (line, v))
    }
}

/// A reader that counts the lines of what has been read through it (serde_json reads a byte at
/// a time, so the count is where the parser is).
struct LineCounter<R> {
    inner: R,
    line: Rc<Cell<usize>>,
}

impl<R> LineCounter<R> {
    fn new(inner: R) -> Self {
        LineCounter {
            inner,
            line: Rc::new(Cell::new(1)),
        }
    }
}

impl<R: Read> Read for LineCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let newlines = buf[..n].iter().filter(|&&b| b == b'\n').count();
        self.line.set(self.line.get() + newlines);
        Ok(n)
    }
}

/// A reader that remembers where the non-blank lines it has passed start, for the CSV reader:
/// a record's position is where the reader began looking for it, before any blank lines it
/// skipped. Only the lines of the reader's look-ahead are kept.
struct LineStarts<R> {
    inner: R,
    offset: u64,
    line: usize,
    at_line_start: bool,
    starts: VecDeque<(u64, usize)>,
}

impl<R> LineStarts<R> {
    fn new(inner: R) -> Self {
        LineStarts {
            inner,
            offset: 0,
            line: 1,
            at_line_start: true,
            starts: VecDeque::new(),
        }
    }

    /// The line of the first non-blank line starting at or after byte `offset`; lines before
    /// it are forgotten.
    fn line_at(&mut self, offset: u64) -> usize {
        while self.starts.front().is_some_and(|&(o, _)| o < offset) {
            self.starts.pop_front();
        }
        self.starts.front().map_or(self.line, |&(_, line)| line)
    }
}

impl<R: Read> Read for LineStarts<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        for (i, &b) in buf[..n].iter().enumerate() {
            if b == b'\n' {
                self.line += 1;
                self.at_line_start = true;
            } else if self.at_line_start && b != b'\r' {
                self.at_line_start = false;
                self.starts.push_back((self.offset + i as u64, self.line));
            }
        }
        self.offset += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<Row> {
        let mut out = Vec::new();
        rows(text.as_bytes(), |r| {
            out.push(r);
            ControlFlow::Continue(())
        })
        .expect("read");
        out
    }

    fn lines(rows: &[Row]) -> Vec<usize> {
        rows.iter().map(|r| r.line).collect()
    }

    const HEADER: &str =
        "serial,dev_eui,applicationId,body_number,user_id,region,usage_type,mode,production_date";

    #[test]
    fn csv_rows_carry_their_line_across_blank_lines_and_quoted_newlines() {
        let text = format!(
            "{HEADER}\n1,a,x,1,u1,north,residential,credit,2026-03-15\n\r\n\n\
             2,b,x,2,\"u\n2\",north,commercial,prepaid,2026-03-15\n3,c,x,3,u3,n,r,c,d\n"
        );
        let rows = read(&text);
        assert_eq!(lines(&rows), [2, 5, 7]);
        let second = rows[1].record.as_ref().expect("a record");
        assert_eq!(second.mode.as_deref(), Some("prepaid"));
        assert_eq!(second.user_id.as_deref(), Some("u\n2"));
    }

    #[test]
    fn an_unknown_csv_column_is_refused_up_front() {
        let err = rows("serial,colour\n1,red\n".as_bytes(), |_| {
            ControlFlow::Continue(())
        })
        .expect_err("unknown column");
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn json_array_elements_are_located_by_line() {
        let rows = read(
            "[\n  {\"serial\": \"x\", \"userId\": \"{[\\\"]}\"},\n\n  {\n \"serial\": \"y\"},7\n]",
        );
        assert_eq!(lines(&rows), [2, 4, 5]);
        let first = rows[0].record.as_ref().expect("a record");
        assert_eq!(first.user_id.as_deref(), Some("{[\"]}"));
        assert_eq!(rows[2].errors[0].to_string(), "line 5: is not an object: 7");
    }

    #[test]
    fn a_broken_json_array_reports_where_and_keeps_the_rows_before() {
        let rows = read("[{\"serial\": \"x\"},\n{\"serial\": \"y\"\n{\"serial\": \"z\"}]");
        assert_eq!(lines(&rows), [1, 3]);
        let message = rows[1].errors[0].to_string();
        assert!(
            message.starts_with("line 3: the file stops being a JSON array of objects here"),
            "{message}"
        );
    }

    #[test]
    fn json_lines_are_read_one_object_a_line() {
        let rows = read("{\"serial\": \"x\"}\n\n{\"serial\": \"y\"\n{\"serial\": \"z\"}\n");
        assert_eq!(lines(&rows), [1, 3, 4]);
        assert!(
            rows[1].errors[0]
                .message
                .starts_with("is not a JSON object")
        );
        let last = rows[2].record.as_ref().expect("a record");
        assert_eq!(last.serial.as_deref(), Some("z"));
    }

    #[test]
    fn reading_stops_when_told() {
        let mut seen = 0;
        rows("[{}, {}, {}]".as_bytes(), |_| {
            seen += 1;
            if seen == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .expect("stopped quietly");
        assert_eq!(seen, 2);
    }
}
