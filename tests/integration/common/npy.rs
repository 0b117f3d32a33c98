//! A reader of NumPy `.npy` files written independently of the program's
//! writer, following numpy's format description: the magic string, the
//! version, the header dictionary, then the raw values.

use std::path::Path;

/// A parsed `.npy` file: its dtype, shape and values (as f64).
#[derive(Debug)]
pub struct Npy {
    /// The `descr` field, e.g. `<f8` or `<i8`.
    pub descr: String,
    /// The `shape` tuple.
    pub shape: Vec<usize>,
    /// The values in C order, converted to f64.
    pub values: Vec<f64>,
}

fn field<'a>(header: &'a str, key: &str) -> &'a str {
    let at = header
        .find(&format!("'{key}':"))
        .unwrap_or_else(|| panic!("no {key} in {header}"));
    header[at + key.len() + 3..].trim_start()
}

/// Reads `path`, checking the framing numpy requires (data aligned to 64 bytes,
/// C order, as many values as the shape holds).
pub fn read_npy(path: &Path) -> Npy {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}: magic", path.display());
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        ),
        v => panic!("{}: version {v}", path.display()),
    };
    assert_eq!(
        (start + len) % 64,
        0,
        "{}: data not aligned to 64 bytes",
        path.display()
    );
    let header = std::str::from_utf8(&bytes[start..start + len]).unwrap();
    assert!(
        header.trim_end().starts_with('{') && header.trim_end().ends_with('}'),
        "{header}"
    );
    assert!(
        field(header, "fortran_order").starts_with("False"),
        "{header}"
    );
    let descr = field(header, "descr");
    let descr = descr[1..].split('\'').next().unwrap().to_string();
    let shape_text = field(header, "shape");
    let shape: Vec<usize> = shape_text[1..shape_text.find(')').unwrap()]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let data = &bytes[start + len..];
    let values: Vec<f64> = match descr.as_str() {
        "<f8" => data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        "<i8" => data
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect(),
        d => panic!("{}: dtype {d}", path.display()),
    };
    assert_eq!(
        data.len(),
        values.len() * 8,
        "{}: trailing bytes",
        path.display()
    );
    assert_eq!(
        values.len(),
        shape.iter().product::<usize>(),
        "{}: {header}",
        path.display()
    );
    Npy {
        descr,
        shape,
        values,
    }
}
