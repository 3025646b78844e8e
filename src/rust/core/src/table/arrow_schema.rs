//! The one thing Parquet keeps only in Arrow's schema: the time zone of a timestamp
//! column. Parquet's own logical type says whether values are instants
//! (`isAdjustedToUTC`), not which zone they are shown in; Arrow writers (pyarrow, R's
//! arrow, arrow-rs) add the zone in the `ARROW:schema` key-value metadata, an Arrow IPC
//! `Schema` message (a FlatBuffer, base64-encoded). This module reads the zones from
//! it and writes a schema of its own, so that readers of our files see the zone too.
//!
//! Formats, from Apache Arrow's published definitions: `format/Message.fbs` and
//! `format/Schema.fbs` (MetadataVersion V5), the IPC framing of the Columnar Format
//! spec (continuation marker 0xFFFFFFFF, then the message length), and the FlatBuffers
//! binary layout (uoffsets, vtables, little-endian, aligned scalars). Only the tables
//! and fields named below are read or written.

use base64::Engine as _;

/// The key-value metadata key Arrow writers use.
pub const KEY: &str = "ARROW:schema";

// Union tags (Schema.fbs `Type`, Message.fbs `MessageHeader`) and field ids.
const HEADER_SCHEMA: u8 = 1;
const TYPE_INT: u8 = 2;
const TYPE_FLOATING_POINT: u8 = 3;
const TYPE_UTF8: u8 = 5;
const TYPE_BOOL: u8 = 6;
const TYPE_DATE: u8 = 8;
const TYPE_TIMESTAMP: u8 = 10;
const METADATA_V5: i16 = 4;
const PRECISION_DOUBLE: i16 = 2;
const DATE_UNIT_DAY: i16 = 0;
const TIME_UNIT_MICROSECOND: i16 = 2;

/// An Arrow column type we write.
#[derive(Debug, Clone, PartialEq)]
pub enum ArrowType {
    Bool,
    Int32,
    Float64,
    Utf8,
    Date32,
    /// Microseconds, in this time zone.
    TimestampMicros(String),
}

/// The time zone of each top-level timestamp column, by column name, from an
/// `ARROW:schema` value. Anything unreadable gives no zones: the values are still
/// right, and shown in UTC.
pub fn time_zones(encoded: &str) -> Vec<(String, String)> {
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return Vec::new();
    };
    // Framed as continuation marker + length, or (before Arrow 0.15) length only.
    let message = match bytes.get(..4) {
        Some([0xff, 0xff, 0xff, 0xff]) => bytes.get(8..),
        Some(_) => bytes.get(4..),
        None => None,
    };
    message.and_then(read_zones).unwrap_or_default()
}

fn read_zones(buf: &[u8]) -> Option<Vec<(String, String)>> {
    let message = FbTable::root(buf)?;
    if message.u8(1)? != HEADER_SCHEMA {
        return None;
    }
    let schema = message.table(2)?;
    let mut zones = Vec::new();
    for field in schema.tables(1)? {
        if field.u8(2) != Some(TYPE_TIMESTAMP) {
            continue;
        }
        let (Some(name), Some(zone)) = (field.string(0), field.table(3).and_then(|t| t.string(1)))
        else {
            continue;
        };
        zones.push((name.to_string(), zone.to_string()));
    }
    Some(zones)
}

/// A FlatBuffers table in `buf` at `pos`, every read bounds-checked.
struct FbTable<'a> {
    buf: &'a [u8],
    pos: usize,
    vtable: usize,
}

fn read_u32(buf: &[u8], pos: usize) -> Option<u32> {
    Some(u32::from_le_bytes(buf.get(pos..pos + 4)?.try_into().ok()?))
}

fn read_u16(buf: &[u8], pos: usize) -> Option<u16> {
    Some(u16::from_le_bytes(buf.get(pos..pos + 2)?.try_into().ok()?))
}

/// The position a uoffset at `pos` points to.
fn follow(buf: &[u8], pos: usize) -> Option<usize> {
    pos.checked_add(read_u32(buf, pos)? as usize)
}

impl<'a> FbTable<'a> {
    fn root(buf: &'a [u8]) -> Option<Self> {
        Self::at(buf, follow(buf, 0)?)
    }

    fn at(buf: &'a [u8], pos: usize) -> Option<Self> {
        let soffset = read_u32(buf, pos)? as i32;
        let vtable = usize::try_from(pos as i64 - i64::from(soffset)).ok()?;
        read_u16(buf, vtable)?;
        Some(FbTable { buf, pos, vtable })
    }

    /// Where field `id` is stored, if present.
    fn field(&self, id: usize) -> Option<usize> {
        let slot = 4 + 2 * id;
        if slot + 2 > read_u16(self.buf, self.vtable)? as usize {
            return None;
        }
        match read_u16(self.buf, self.vtable + slot)? {
            0 => None,
            offset => Some(self.pos + offset as usize),
        }
    }

    fn u8(&self, id: usize) -> Option<u8> {
        self.buf.get(self.field(id)?).copied()
    }

    fn table(&self, id: usize) -> Option<FbTable<'a>> {
        FbTable::at(self.buf, follow(self.buf, self.field(id)?)?)
    }

    fn string(&self, id: usize) -> Option<&'a str> {
        let at = follow(self.buf, self.field(id)?)?;
        let len = read_u32(self.buf, at)? as usize;
        std::str::from_utf8(self.buf.get(at + 4..at + 4 + len)?).ok()
    }

    fn tables(&self, id: usize) -> Option<Vec<FbTable<'a>>> {
        let at = follow(self.buf, self.field(id)?)?;
        let n = read_u32(self.buf, at)? as usize;
        (0..n)
            .map(|i| FbTable::at(self.buf, follow(self.buf, at + 4 + 4 * i)?))
            .collect()
    }
}

/// The `ARROW:schema` value for columns of these names and types, all nullable.
pub fn encode(columns: &[(&str, ArrowType)]) -> String {
    let fields = columns
        .iter()
        .map(|(name, t)| {
            let (tag, type_table) = match t {
                ArrowType::Bool => (TYPE_BOOL, Obj::Table(vec![])),
                ArrowType::Int32 => (
                    TYPE_INT,
                    Obj::Table(vec![Some(Slot::I32(32)), Some(Slot::U8(1))]),
                ),
                ArrowType::Float64 => (
                    TYPE_FLOATING_POINT,
                    Obj::Table(vec![Some(Slot::I16(PRECISION_DOUBLE))]),
                ),
                ArrowType::Utf8 => (TYPE_UTF8, Obj::Table(vec![])),
                // DAY is not the default unit (MILLISECOND), so it is written.
                ArrowType::Date32 => (TYPE_DATE, Obj::Table(vec![Some(Slot::I16(DATE_UNIT_DAY))])),
                ArrowType::TimestampMicros(zone) => (
                    TYPE_TIMESTAMP,
                    Obj::Table(vec![
                        Some(Slot::I16(TIME_UNIT_MICROSECOND)),
                        Some(Slot::Ref(Obj::Str(zone.clone()))),
                    ]),
                ),
            };
            // Field: name, nullable, type_type, type, dictionary, children.
            Obj::Table(vec![
                Some(Slot::Ref(Obj::Str(name.to_string()))),
                Some(Slot::U8(1)),
                Some(Slot::U8(tag)),
                Some(Slot::Ref(type_table)),
                None,
                Some(Slot::Ref(Obj::Tables(vec![]))),
            ])
        })
        .collect();
    // Schema: endianness (Little, the default), fields.
    let schema = Obj::Table(vec![None, Some(Slot::Ref(Obj::Tables(fields)))]);
    // Message: version, header_type, header.
    let message = Obj::Table(vec![
        Some(Slot::I16(METADATA_V5)),
        Some(Slot::U8(HEADER_SCHEMA)),
        Some(Slot::Ref(schema)),
    ]);
    let mut fb = Builder { buf: vec![0; 4] };
    let root = fb.write(&message);
    fb.patch(0, root);
    while !fb.buf.len().is_multiple_of(8) {
        fb.buf.push(0);
    }
    let mut framed = Vec::with_capacity(fb.buf.len() + 8);
    framed.extend_from_slice(&[0xff; 4]);
    framed.extend_from_slice(&(fb.buf.len() as i32).to_le_bytes());
    framed.extend_from_slice(&fb.buf);
    base64::engine::general_purpose::STANDARD.encode(framed)
}

/// A FlatBuffers object to write: a table (its fields by id, `None` absent), a
/// string or a vector of tables.
enum Obj {
    Table(Vec<Option<Slot>>),
    Str(String),
    Tables(Vec<Obj>),
}

enum Slot {
    U8(u8),
    I16(i16),
    I32(i32),
    Ref(Obj),
}

impl Slot {
    fn size(&self) -> usize {
        match self {
            Slot::U8(_) => 1,
            Slot::I16(_) => 2,
            Slot::I32(_) | Slot::Ref(_) => 4,
        }
    }
}

/// Writes front to back: every object is placed after whatever refers to it, so each
/// uoffset is positive, as the format requires; a table's vtable just before it.
struct Builder {
    buf: Vec<u8>,
}

impl Builder {
    fn align(&mut self, n: usize) {
        while !self.buf.len().is_multiple_of(n) {
            self.buf.push(0);
        }
    }

    /// Point the uoffset at `at` to `target`.
    fn patch(&mut self, at: usize, target: usize) {
        let offset = (target - at) as u32;
        self.buf[at..at + 4].copy_from_slice(&offset.to_le_bytes());
    }

    /// Write `obj`; returns where it starts.
    fn write(&mut self, obj: &Obj) -> usize {
        match obj {
            Obj::Str(s) => {
                self.align(4);
                let at = self.buf.len();
                self.buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
                self.buf.extend_from_slice(s.as_bytes());
                self.buf.push(0);
                at
            }
            Obj::Tables(items) => {
                self.align(4);
                let at = self.buf.len();
                self.buf
                    .extend_from_slice(&(items.len() as u32).to_le_bytes());
                self.buf.resize(at + 4 + 4 * items.len(), 0);
                for (i, item) in items.iter().enumerate() {
                    let target = self.write(item);
                    self.patch(at + 4 + 4 * i, target);
                }
                at
            }
            Obj::Table(slots) => {
                // Inline layout: the soffset, then fields by falling size (all aligned).
                let mut order: Vec<usize> =
                    (0..slots.len()).filter(|&i| slots[i].is_some()).collect();
                order.sort_by_key(|&i| std::cmp::Reverse(slots[i].as_ref().map_or(0, Slot::size)));
                let mut offsets = vec![0u16; slots.len()];
                let mut size = 4;
                for &i in &order {
                    offsets[i] = size as u16;
                    size += slots[i].as_ref().map_or(0, Slot::size);
                }
                let size = size.div_ceil(4) * 4;
                self.align(2);
                let vtable = self.buf.len();
                self.buf
                    .extend_from_slice(&((4 + 2 * slots.len()) as u16).to_le_bytes());
                self.buf.extend_from_slice(&(size as u16).to_le_bytes());
                for offset in &offsets {
                    self.buf.extend_from_slice(&offset.to_le_bytes());
                }
                self.align(4);
                let at = self.buf.len();
                self.buf.resize(at + size, 0);
                let soffset = (at - vtable) as i32;
                self.buf[at..at + 4].copy_from_slice(&soffset.to_le_bytes());
                for &i in &order {
                    let p = at + offsets[i] as usize;
                    match slots[i].as_ref() {
                        Some(Slot::U8(v)) => self.buf[p] = *v,
                        Some(Slot::I16(v)) => self.buf[p..p + 2].copy_from_slice(&v.to_le_bytes()),
                        Some(Slot::I32(v)) => self.buf[p..p + 4].copy_from_slice(&v.to_le_bytes()),
                        Some(Slot::Ref(_)) | None => {}
                    }
                }
                for &i in &order {
                    if let Some(Slot::Ref(child)) = slots[i].as_ref() {
                        let target = self.write(child);
                        self.patch(at + offsets[i] as usize, target);
                    }
                }
                at
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_written_are_read_back() {
        let encoded = encode(&[
            ("flag", ArrowType::Bool),
            ("at", ArrowType::TimestampMicros("Europe/Vienna".into())),
            ("n", ArrowType::Int32),
            ("x", ArrowType::Float64),
            ("s", ArrowType::Utf8),
            ("day", ArrowType::Date32),
            ("utc", ArrowType::TimestampMicros("UTC".into())),
        ]);
        assert_eq!(
            time_zones(&encoded),
            [
                ("at".to_string(), "Europe/Vienna".to_string()),
                ("utc".to_string(), "UTC".to_string())
            ]
        );
    }

    #[test]
    fn unreadable_schemas_give_no_zones() {
        for bad in ["", "not base64!", "AAAA", "/////wAAAAA=", "//////////8="] {
            assert!(time_zones(bad).is_empty(), "{bad}");
        }
        // Truncated anywhere: no panic, no zones or the zones before the cut.
        let full = base64::engine::general_purpose::STANDARD
            .decode(encode(&[("at", ArrowType::TimestampMicros("UTC".into()))]))
            .unwrap();
        for n in 0..full.len() {
            let cut = base64::engine::general_purpose::STANDARD.encode(&full[..n]);
            let zones = time_zones(&cut);
            assert!(zones.len() <= 1);
        }
    }
}
