//! Safetensors files to and from [`TensorMap`]s.
//!
//! Reading memory-maps the file and checks the whole header *before*
//! allocating any tensor: header length, JSON, dtype, shape overflow, byte
//! counts and offsets, then the safetensors crate's own validation
//! (contiguous offsets covering the data exactly). Every violation is an
//! error naming the file and, where there is one, the tensor; no input
//! panics.
//!
//! Writing is atomic (see [`super::atomic`]) and deterministic: the header
//! lists keys in sorted order and the data is laid out in sorted key order
//! within each element size, largest elements first (as the reference
//! writer does, so every tensor stays aligned when the file is mapped). A
//! file whose tensors share one dtype, the usual case, is in plain sorted
//! key order. Identical inputs give byte-identical files, which makes
//! [`super::folder::content_hash`] meaningful.

use super::atomic::write_atomic;
use super::host_tensor::{DType, HostTensor, TensorMap, checked_numel};
use anyhow::{Context, Result, anyhow, bail};
use memmap2::Mmap;
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::Path;

/// Largest header accepted or written, in bytes (the reference limit, 100 MB).
pub const MAX_HEADER_LEN: u64 = 100_000_000;

/// The header key holding free-form string metadata.
const METADATA_KEY: &str = "__metadata__";

/// One tensor's header entry, as written in the file.
#[derive(Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

/// One checked tensor entry.
struct Entry {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// A checked header.
struct Header {
    metadata: Option<BTreeMap<String, String>>,
    entries: Vec<Entry>,
}

/// A hint for files that are obviously not safetensors.
fn format_hint(buf: &[u8]) -> &'static str {
    if buf.starts_with(b"PK\x03\x04") || buf.first() == Some(&0x80) {
        " (it looks like a PyTorch zip/pickle checkpoint, which is not loaded)"
    } else {
        ""
    }
}

/// Reads and checks the 8-byte header length; returns it as `usize`.
fn header_len(prefix: &[u8], file_len: u64, src: &str) -> Result<usize> {
    let Some(len_bytes) = prefix.get(..8) else {
        bail!(
            "{src}: not a safetensors file: {file_len} bytes is too short to hold the 8-byte header length{}",
            format_hint(prefix)
        );
    };
    let mut a = [0u8; 8];
    a.copy_from_slice(len_bytes);
    let n = u64::from_le_bytes(a);
    if n > MAX_HEADER_LEN {
        bail!(
            "{src}: not a safetensors file: the header length field says {n} bytes (limit {MAX_HEADER_LEN}){}",
            format_hint(prefix)
        );
    }
    if n + 8 > file_len {
        bail!(
            "{src}: truncated or corrupt safetensors file: the header claims {n} bytes but the file has only {file_len} bytes in all"
        );
    }
    Ok(n as usize)
}

/// Parses the `__metadata__` value (a map of strings).
fn parse_metadata(v: serde_json::Value, src: &str) -> Result<BTreeMap<String, String>> {
    serde_json::from_value(v)
        .map_err(|e| anyhow!("{src}: the header's {METADATA_KEY} is not a map of strings: {e}"))
}

/// Parses the header JSON text into a JSON object.
fn parse_header_json(
    bytes: &[u8],
    src: &str,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| anyhow!("{src}: the safetensors header is not UTF-8 text: {e}"))?;
    serde_json::from_str(text).map_err(|e| {
        anyhow!("{src}: the safetensors header is not a valid JSON object ({e}); the file is corrupt or not safetensors")
    })
}

/// Checks every header entry against the file: dtype supported, shape
/// product and byte count without overflow, byte count matching the
/// offsets, offsets inside the data region.
fn parse_header(buf: &[u8], src: &str) -> Result<Header> {
    let n = header_len(buf, buf.len() as u64, src)?;
    let data_len = buf.len() - 8 - n;
    let json = parse_header_json(&buf[8..8 + n], src)?;

    let mut metadata = None;
    let mut entries = Vec::with_capacity(json.len());
    for (name, value) in json {
        if name == METADATA_KEY {
            if !value.is_null() {
                metadata = Some(parse_metadata(value, src)?);
            }
            continue;
        }
        let raw: RawEntry = serde_json::from_value(value)
            .map_err(|e| anyhow!("{src}: tensor `{name}`: malformed header entry: {e}"))?;
        let dtype = DType::from_name(&raw.dtype).ok_or_else(|| {
            anyhow!(
                "{src}: tensor `{name}` has dtype {}, which is not supported (supported: F32, F16, BF16, F64, I64)",
                raw.dtype
            )
        })?;
        let nbytes = checked_numel(&raw.shape)
            .and_then(|numel| numel.checked_mul(dtype.size()))
            .ok_or_else(|| {
                anyhow!(
                    "{src}: tensor `{name}` has an absurd shape {:?} (its size overflows)",
                    raw.shape
                )
            })?;
        let [start, end] = raw.data_offsets;
        if end < start {
            bail!("{src}: tensor `{name}` has reversed data_offsets [{start}, {end}]");
        }
        if end - start != nbytes {
            bail!(
                "{src}: tensor `{name}` is {dtype} with shape {:?}, which needs {nbytes} bytes, but its data_offsets [{start}, {end}] span {} bytes",
                raw.shape,
                end - start
            );
        }
        if end > data_len {
            bail!(
                "{src}: tensor `{name}` has data_offsets [{start}, {end}] outside the file's {data_len}-byte data section (truncated file?)"
            );
        }
        entries.push(Entry {
            name,
            dtype,
            shape: raw.shape,
            start,
            end,
        });
    }
    Ok(Header { metadata, entries })
}

/// Reads a whole safetensors image; `src` names it in errors.
fn read_impl(buf: &[u8], src: &str) -> Result<(TensorMap, Option<BTreeMap<String, String>>)> {
    let header = parse_header(buf, src)?;
    // The crate's own validation: offsets contiguous, in order, and
    // covering the data section exactly.
    let st = SafeTensors::deserialize(buf)
        .map_err(|e| anyhow!("{src}: invalid safetensors file: {e}"))?;
    let mut map = TensorMap::new();
    for e in header.entries {
        let view = st
            .tensor(&e.name)
            .map_err(|err| anyhow!("{src}: tensor `{}`: {err}", e.name))?;
        let data = view.data();
        if view.shape() != e.shape.as_slice() || data.len() != e.end - e.start {
            bail!("{src}: tensor `{}`: inconsistent header", e.name);
        }
        map.insert(
            e.name,
            HostTensor {
                dtype: e.dtype,
                shape: e.shape,
                bytes: data.to_vec(),
            },
        );
    }
    Ok((map, header.metadata))
}

/// Reads safetensors data held in memory (tests, fuzzing, embedded files).
pub fn read_safetensors_bytes(bytes: &[u8]) -> Result<TensorMap> {
    read_impl(bytes, "safetensors data").map(|(m, _)| m)
}

/// Reads a safetensors file into a [`TensorMap`] (keys exactly as stored).
///
/// The file is memory-mapped and fully validated before any tensor is
/// copied out; errors name the file and the offending tensor.
pub fn read_safetensors(path: impl AsRef<Path>) -> Result<TensorMap> {
    let path = path.as_ref();
    let src = path.display().to_string();
    let file = crate::input::open_regular(path)?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot stat {src}"))?;
    if meta.len() < 8 {
        // Too short to be safetensors (and an empty file cannot be mapped).
        bail!(
            "{src}: not a safetensors file: {} bytes is too short to hold the 8-byte header length",
            meta.len()
        );
    }
    // SAFETY: the map is only read, and every tensor is copied out before it
    // is dropped. Checkpoints are replaced by rename (never rewritten in
    // place), so the mapped file does not change under us in normal use.
    let map = unsafe { Mmap::map(&file) }.with_context(|| format!("cannot memory-map {src}"))?;
    read_impl(&map, &src).map(|(m, _)| m)
}

/// The header's `__metadata__` map of a safetensors file (`None` if absent).
/// Reads only the header, not the tensor data.
pub fn safetensors_metadata(path: impl AsRef<Path>) -> Result<Option<BTreeMap<String, String>>> {
    let path = path.as_ref();
    let src = path.display().to_string();
    let mut file = crate::input::open_regular(path)?;
    let file_len = file
        .metadata()
        .with_context(|| format!("cannot stat {src}"))?
        .len();
    let mut head = Vec::with_capacity(8);
    (&mut file)
        .take(8)
        .read_to_end(&mut head)
        .with_context(|| format!("cannot read {src}"))?;
    let n = header_len(&head, file_len, &src)?;
    let mut header = vec![0u8; n];
    file.read_exact(&mut header)
        .with_context(|| format!("cannot read the header of {src}"))?;
    let mut json = parse_header_json(&header, &src)?;
    json.remove(METADATA_KEY)
        .filter(|v| !v.is_null())
        .map(|v| parse_metadata(v, &src))
        .transpose()
}

/// A header entry for serialisation.
#[derive(Serialize)]
#[serde(untagged)]
enum HeaderItem<'a> {
    Metadata(&'a BTreeMap<String, String>),
    Tensor {
        dtype: &'static str,
        shape: &'a [usize],
        data_offsets: [usize; 2],
    },
}

/// Checks the tensors, orders them, and builds the padded header.
/// Returns the header bytes and the tensors in data order.
fn prepare<'a>(
    mut entries: Vec<(String, &'a HostTensor)>,
    metadata: Option<&BTreeMap<String, String>>,
    dst: &str,
) -> Result<(Vec<u8>, Vec<&'a HostTensor>)> {
    let mut seen = BTreeSet::new();
    for (name, t) in &entries {
        if name == METADATA_KEY {
            bail!("cannot write {dst}: `{METADATA_KEY}` is reserved and cannot name a tensor");
        }
        if !seen.insert(name.as_str()) {
            bail!("cannot write {dst}: two tensors are named `{name}`");
        }
        t.check_len()
            .with_context(|| format!("cannot write {dst}: tensor `{name}`"))?;
    }
    entries.sort_by(|(an, at), (bn, bt)| {
        bt.dtype
            .size()
            .cmp(&at.dtype.size())
            .then_with(|| an.cmp(bn))
    });

    let mut items: BTreeMap<&str, HeaderItem<'_>> = BTreeMap::new();
    if let Some(m) = metadata {
        items.insert(METADATA_KEY, HeaderItem::Metadata(m));
    }
    let mut offset = 0usize;
    for (name, t) in &entries {
        let end = offset + t.bytes.len();
        items.insert(
            name,
            HeaderItem::Tensor {
                dtype: t.dtype.name(),
                shape: &t.shape,
                data_offsets: [offset, end],
            },
        );
        offset = end;
    }
    let mut header = serde_json::to_vec(&items)
        .with_context(|| format!("cannot write {dst}: header serialisation failed"))?;
    // Pad with spaces so the data section starts 8-byte aligned.
    header.resize(header.len().next_multiple_of(8), b' ');
    if header.len() as u64 > MAX_HEADER_LEN {
        bail!(
            "cannot write {dst}: the header would be {} bytes (limit {MAX_HEADER_LEN})",
            header.len()
        );
    }
    let order = entries.into_iter().map(|(_, t)| t).collect();
    Ok((header, order))
}

/// Writes the prepared header and data to `w`.
fn emit(w: &mut impl Write, header: &[u8], order: &[&HostTensor]) -> std::io::Result<()> {
    w.write_all(&(header.len() as u64).to_le_bytes())?;
    w.write_all(header)?;
    for t in order {
        w.write_all(&t.bytes)?;
    }
    Ok(())
}

/// Writes named tensors (any key order, borrowed) atomically to `path`.
pub(crate) fn write_entries(
    path: &Path,
    entries: Vec<(String, &HostTensor)>,
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<()> {
    let (header, order) = prepare(entries, metadata, &path.display().to_string())?;
    write_atomic(path, |w| emit(w, &header, &order))
}

/// Writes `tensors` to `path` as safetensors, atomically (the old file is
/// untouched on any error), with optional `__metadata__`. Inconsistent
/// tensors (byte length not matching shape and dtype) are refused before
/// anything is written.
pub fn write_safetensors(
    path: impl AsRef<Path>,
    tensors: &TensorMap,
    metadata: Option<BTreeMap<String, String>>,
) -> Result<()> {
    let entries = tensors.iter().map(|(k, v)| (k.clone(), v)).collect();
    write_entries(path.as_ref(), entries, metadata.as_ref())
}

/// Serialises `tensors` to safetensors bytes in memory (same layout as
/// [`write_safetensors`]).
pub fn serialize_safetensors(
    tensors: &TensorMap,
    metadata: Option<BTreeMap<String, String>>,
) -> Result<Vec<u8>> {
    let entries = tensors.iter().map(|(k, v)| (k.clone(), v)).collect();
    let (header, order) = prepare(entries, metadata.as_ref(), "safetensors data")?;
    let mut out =
        Vec::with_capacity(8 + header.len() + order.iter().map(|t| t.bytes.len()).sum::<usize>());
    emit(&mut out, &header, &order).context("in-memory write failed")?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    fn sample() -> TensorMap {
        let mut m = TensorMap::new();
        m.insert(
            "b.weight".into(),
            HostTensor::from_f32(vec![2, 3], &[1.0, -2.0, 3.5, 0.0, 1e-3, 7.0]).unwrap(),
        );
        m.insert(
            "a.half".into(),
            HostTensor::from_f32_as(DType::F16, vec![3], &[0.5, 1.0, 65504.0]).unwrap(),
        );
        m.insert(
            "c.bf".into(),
            HostTensor::from_f32_as(DType::BF16, vec![1, 1, 3], &[1.0, -1.0, 3.0]).unwrap(),
        );
        m.insert(
            "d.double".into(),
            HostTensor::from_f32_as(DType::F64, vec![], &[2.0]).unwrap(),
        );
        m.insert(
            "e.steps".into(),
            HostTensor::new(
                DType::I64,
                vec![2],
                [5i64, -1].iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
            .unwrap(),
        );
        m.insert(
            "f.empty".into(),
            HostTensor::from_f32(vec![0, 4], &[]).unwrap(),
        );
        m
    }

    fn meta() -> BTreeMap<String, String> {
        BTreeMap::from([("format".to_string(), "pt".to_string())])
    }

    /// A file from a literal header and data section.
    fn raw(header: &str, data: &[u8]) -> Vec<u8> {
        let mut v = (header.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(header.as_bytes());
        v.extend_from_slice(data);
        v
    }

    fn err_of(bytes: &[u8]) -> String {
        format!("{:#}", read_safetensors_bytes(bytes).unwrap_err())
    }

    #[test]
    fn file_round_trip_is_byte_identical() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let m = sample();
        write_safetensors(&p, &m, Some(meta())).unwrap();
        assert_eq!(read_safetensors(&p).unwrap(), m);
        assert_eq!(safetensors_metadata(&p).unwrap(), Some(meta()));
        let first = std::fs::read(&p).unwrap();
        write_safetensors(&p, &m, Some(meta())).unwrap();
        assert_eq!(
            std::fs::read(&p).unwrap(),
            first,
            "writes are deterministic"
        );
        assert_eq!(serialize_safetensors(&m, Some(meta())).unwrap(), first);
        // No metadata written, none read.
        write_safetensors(&p, &m, None).unwrap();
        assert_eq!(safetensors_metadata(&p).unwrap(), None);
    }

    #[test]
    fn our_files_read_with_the_reference_crate() {
        let m = sample();
        let bytes = serialize_safetensors(&m, Some(meta())).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.len(), m.len());
        for (name, t) in &m {
            let v = st.tensor(name).unwrap();
            assert_eq!(v.shape(), t.shape.as_slice());
            assert_eq!(v.data(), t.bytes.as_slice());
            assert_eq!(v.dtype().to_string(), t.dtype.name());
        }
        // Header starts the data section 8-byte aligned, and with one dtype
        // the data is in sorted key order.
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        assert_eq!(n % 8, 0);
        let mut one = TensorMap::new();
        for k in ["z", "a", "m"] {
            one.insert(k.into(), HostTensor::from_f32(vec![1], &[1.0]).unwrap());
        }
        let bytes = serialize_safetensors(&one, None).unwrap();
        let (_, md) = SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(md.offset_keys(), ["a", "m", "z"]);
    }

    #[test]
    fn reference_crate_files_read_identically() {
        let f32s: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let f16s: Vec<u8> = [half::f16::from_f32(0.25), half::f16::from_f32(-8.0)]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let bf16s: Vec<u8> = [half::bf16::from_f32(3.0)]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let views = vec![
            (
                "x.weight",
                TensorView::new(safetensors::Dtype::F32, vec![2, 2], &f32s).unwrap(),
            ),
            (
                "x.bias",
                TensorView::new(safetensors::Dtype::F16, vec![2], &f16s).unwrap(),
            ),
            (
                "y",
                TensorView::new(safetensors::Dtype::BF16, vec![1], &bf16s).unwrap(),
            ),
        ];
        let bytes = safetensors::serialize(views, None).unwrap();
        let m = read_safetensors_bytes(&bytes).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m["x.weight"].to_f32().unwrap(), [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m["x.weight"].shape, [2, 2]);
        assert_eq!(m["x.bias"].dtype, DType::F16);
        assert_eq!(m["x.bias"].bytes, f16s);
        assert_eq!(m["x.bias"].to_f32().unwrap(), [0.25, -8.0]);
        assert_eq!(m["y"].dtype, DType::BF16);
        assert_eq!(m["y"].to_f32().unwrap(), [3.0]);
        // Our re-serialisation reads back the same.
        let again = serialize_safetensors(&m, None).unwrap();
        assert_eq!(read_safetensors_bytes(&again).unwrap(), m);
    }

    #[test]
    fn truncated_and_short_files_are_errors() {
        let good = serialize_safetensors(&sample(), None).unwrap();
        for cut in [0, 3, 7, 8, 20, good.len() - 1] {
            let msg = err_of(&good[..cut]);
            assert!(!msg.is_empty());
        }
        let msg = err_of(&good[..good.len() - 1]);
        assert!(
            msg.contains("outside") || msg.contains("truncated"),
            "{msg}"
        );
        // Trailing garbage is not accepted either.
        let mut long = good.clone();
        long.push(0);
        assert!(read_safetensors_bytes(&long).is_err());
    }

    #[test]
    fn header_length_past_end_or_absurd() {
        let mut v = 1000u64.to_le_bytes().to_vec();
        v.extend_from_slice(b"{}");
        assert!(err_of(&v).contains("header claims 1000 bytes"));
        let mut v = u64::MAX.to_le_bytes().to_vec();
        v.extend_from_slice(b"{}");
        assert!(err_of(&v).contains("header length"));
        let mut zip = b"PK\x03\x04".to_vec();
        zip.extend_from_slice(&[0xff; 60]);
        assert!(err_of(&zip).contains("pickle"));
    }

    #[test]
    fn offsets_out_of_range() {
        let h = r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#;
        let msg = err_of(&raw(h, &[0; 8]));
        assert!(msg.contains("`w`") && msg.contains("outside"), "{msg}");
        let h = r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#;
        assert!(err_of(&raw(h, &[0; 8])).contains("reversed"));
        let h = r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[18446744073709551607,18446744073709551615]}}"#;
        assert!(read_safetensors_bytes(&raw(h, &[0; 8])).is_err());
    }

    #[test]
    fn gaps_overlaps_and_uncovered_bytes() {
        // Overlapping tensors.
        let h = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        assert!(read_safetensors_bytes(&raw(h, &[0; 4])).is_err());
        // Gap between tensors.
        let h = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#;
        assert!(read_safetensors_bytes(&raw(h, &[0; 12])).is_err());
        // Extra bytes not covered by any tensor.
        let h = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        assert!(read_safetensors_bytes(&raw(h, &[0; 8])).is_err());
        assert!(read_safetensors_bytes(&raw(h, &[0; 4])).is_ok());
    }

    #[test]
    fn byte_count_mismatch_names_tensor() {
        let h = r#"{"down.0.w":{"dtype":"F16","shape":[3],"data_offsets":[0,4]}}"#;
        let msg = err_of(&raw(h, &[0; 4]));
        assert!(
            msg.contains("`down.0.w`") && msg.contains("needs 6 bytes"),
            "{msg}"
        );
    }

    #[test]
    fn absurd_shapes() {
        for shape in [
            "[18446744073709551615,2]",
            "[4294967296,4294967296]",
            "[4611686018427387904]",
        ] {
            let h = format!(r#"{{"w":{{"dtype":"F32","shape":{shape},"data_offsets":[0,4]}}}}"#);
            let msg = err_of(&raw(&h, &[0; 4]));
            assert!(msg.contains("absurd") && msg.contains("`w`"), "{msg}");
        }
        let h = r#"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#;
        assert!(err_of(&raw(h, &[0; 4])).contains("`w`"));
    }

    #[test]
    fn bad_json_and_bad_entries() {
        for h in [
            "{not json",
            "[]",
            "\"str\"",
            r#"{"w":{"dtype":"F32","shape":[1]}}"#,
            r#"{"w":5}"#,
            r#"{"__metadata__":{"k":1}}"#,
        ] {
            assert!(read_safetensors_bytes(&raw(h, &[])).is_err(), "{h}");
        }
        assert!(err_of(&raw("{not json", &[])).contains("JSON"));
        let mut v = 2u64.to_le_bytes().to_vec();
        v.extend_from_slice(&[0xff, 0xfe]);
        assert!(err_of(&v).contains("UTF-8"));
        // An empty header object is a valid, empty file.
        assert!(read_safetensors_bytes(&raw("{}", &[])).unwrap().is_empty());
    }

    #[test]
    fn unsupported_dtype_names_tensor_and_dtype() {
        let h = r#"{"mid.count":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}"#;
        let msg = err_of(&raw(h, &[0; 4]));
        assert!(msg.contains("`mid.count`") && msg.contains("I32"), "{msg}");
        let h = r#"{"q":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}"#;
        assert!(err_of(&raw(h, &[0])).contains("F8_E4M3"));
    }

    #[test]
    fn no_input_panics() {
        // Every truncation and every single-byte corruption of a valid file.
        let good = serialize_safetensors(&sample(), Some(meta())).unwrap();
        for cut in 0..good.len() {
            let _ = read_safetensors_bytes(&good[..cut]);
        }
        let mut buf = good.clone();
        for i in 0..good.len() {
            for x in [0x01u8, 0x80, 0xff] {
                buf[i] ^= x;
                let _ = read_safetensors_bytes(&buf);
                buf[i] ^= x;
            }
        }
        // Pseudo-random garbage with a plausible length prefix.
        let mut s = 0x9e3779b97f4a7c15u64;
        for _ in 0..300 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let len = (s % 200) as usize;
            let mut v = ((s >> 8) % 64).to_le_bytes().to_vec();
            v.extend((0..len).map(|i| (s.rotate_left(i as u32) & 0xff) as u8));
            let _ = read_safetensors_bytes(&v);
        }
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("broken.safetensors");
        std::fs::write(&p, b"abc").unwrap();
        let msg = format!("{:#}", read_safetensors(&p).unwrap_err());
        assert!(msg.contains("broken.safetensors"), "{msg}");
        std::fs::write(&p, b"").unwrap();
        assert!(read_safetensors(&p).is_err());
        let h = r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        std::fs::write(&p, raw(h, &[0; 4])).unwrap();
        let msg = format!("{:#}", read_safetensors(&p).unwrap_err());
        assert!(
            msg.contains("broken.safetensors") && msg.contains("`w`"),
            "{msg}"
        );
        let missing = dir.path().join("missing.safetensors");
        assert!(
            format!("{:#}", read_safetensors(&missing).unwrap_err())
                .contains("missing.safetensors")
        );
        assert!(read_safetensors(dir.path()).is_err());
        assert!(safetensors_metadata(&missing).is_err());
    }

    #[test]
    fn inconsistent_tensors_are_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        write_safetensors(&p, &sample(), None).unwrap();
        let before = std::fs::read(&p).unwrap();
        let mut bad = sample();
        bad.get_mut("b.weight").unwrap().bytes.pop();
        let msg = format!("{:#}", write_safetensors(&p, &bad, None).unwrap_err());
        assert!(msg.contains("`b.weight`"), "{msg}");
        let mut reserved = TensorMap::new();
        reserved.insert(
            METADATA_KEY.into(),
            HostTensor::from_f32(vec![1], &[0.0]).unwrap(),
        );
        assert!(write_safetensors(&p, &reserved, None).is_err());
        assert_eq!(std::fs::read(&p).unwrap(), before);
    }
}
