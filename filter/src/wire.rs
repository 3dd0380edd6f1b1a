//! The Proxy-Wasm serialisation of a header map, read and written here rather
//! than by the SDK: the SDK panics (a wasm trap) on a header value that is not
//! UTF-8, and HTTP allows such bytes, so one odd client header would fail the
//! stream. Keys are Envoy's lowercase tokens; values stay raw bytes.
//!
//! Layout: `u32` count, then per pair `u32` key length and `u32` value
//! length, then every key and value, each followed by a NUL byte.

/// Header pairs borrowed from a serialised map. `None` for a malformed map.
pub fn parse(bytes: &[u8]) -> Option<Vec<(&str, &[u8])>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = read_u32(bytes, 0)? as usize;
    let mut data = 4usize.checked_add(count.checked_mul(8)?)?;
    let mut pairs = Vec::with_capacity(count.min(bytes.len() / 8));
    for i in 0..count {
        let key_len = read_u32(bytes, 4 + i * 8)? as usize;
        let value_len = read_u32(bytes, 8 + i * 8)? as usize;
        let key = bytes.get(data..data.checked_add(key_len)?)?;
        data = data.checked_add(key_len + 1)?;
        let value = bytes.get(data..data.checked_add(value_len)?)?;
        data = data.checked_add(value_len + 1)?;
        pairs.push((std::str::from_utf8(key).ok()?, value));
    }
    Some(pairs)
}

pub fn serialize(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let data: usize = pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut out = Vec::with_capacity(4 + pairs.len() * 8 + data);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_raw_bytes() {
        let pairs: Vec<(&str, &[u8])> =
            vec![(":path", b"/a?b"), ("x-latin", b"caf\xe9"), ("empty", b"")];
        let bytes = serialize(&pairs);
        assert_eq!(parse(&bytes), Some(pairs));
        assert_eq!(parse(&[]), Some(vec![]));
    }

    #[test]
    fn malformed_maps_are_refused_not_trapped() {
        let good = serialize(&[("a", b"b")]);
        // Every cut that loses data (the final NUL carries none).
        for cut in 0..good.len() - 1 {
            assert_eq!(
                parse(&good[..cut]),
                if cut == 0 { Some(vec![]) } else { None },
                "cut at {cut}"
            );
        }
        let mut huge = good.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&huge), None);
        let mut long_key = good;
        long_key[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&long_key), None);
    }
}
