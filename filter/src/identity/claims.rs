//! The verified claims of a request, as Envoy hands them over.
//!
//! `jwt_authn` stores the payload it verified in the stream's dynamic
//! metadata (`payload_in_metadata`) as a `google.protobuf.Struct`. What a
//! Wasm property read of it returns depends on the Envoy release: recent
//! ones (1.40 checked) write a map as proxy-wasm's pairs encoding (a count,
//! the sizes, then each key and value NUL-terminated), a list as pairs of
//! its elements with empty values, a string as its bytes, a number as an
//! 8-byte little-endian double and a boolean as one byte; older ones write
//! the Struct in protobuf's wire format. This module reads either — only
//! what claims need: the top-level claims with their strings, numbers,
//! booleans and lists of strings; nested objects are kept as present but
//! opaque — within fixed bounds, so a token with an absurd payload costs no
//! more than them.
//!
//! The pairs encoding does not say a value's type. A value that is itself a
//! well-formed pairs encoding is a list (all values empty) or an object; one
//! byte 0 or 1 a boolean; UTF-8 without NUL a string; eight other bytes a
//! number; anything else is opaque and matches no rule. A string claim would have to hold NUL bytes at exact places to
//! read as a list: issuers do not put such values in tokens, and such a
//! claim can only ever match a rule on that same claim.

/// Payloads larger than this are not read (the caller counts as having
/// no verified identity): a JWT that size is not one anybody issues.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Claims kept per payload, and values per list claim.
pub const MAX_CLAIMS: usize = 256;
pub const MAX_LIST_VALUES: usize = 256;

/// One claim's value.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimValue {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
    /// A list (its scalar elements; nested lists and objects are left out).
    List(Vec<ClaimValue>),
    /// A JSON object: present, not read.
    Object,
}

/// The verified claims of one request, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims {
    fields: Vec<(String, ClaimValue)>,
}

/// Why a payload could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimsError {
    TooLarge,
    Malformed,
}

impl Claims {
    /// Claims from name-value pairs (tests, `agentroute check --claims`).
    pub fn from_pairs(fields: Vec<(String, ClaimValue)>) -> Self {
        Claims { fields }
    }

    /// Claims from a JSON object (`agentroute check --claims`).
    pub fn from_json(value: &serde_json::Value) -> Option<Self> {
        let object = value.as_object()?;
        let fields = object
            .iter()
            .take(MAX_CLAIMS)
            .map(|(k, v)| (k.clone(), from_json_value(v, true)))
            .collect();
        Some(Claims { fields })
    }

    /// The value of claim `name`, if the payload has it. A claim given
    /// twice (a hostile encoder) reads as its last, as JSON parsers do.
    pub fn get(&self, name: &str) -> Option<&ClaimValue> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

fn from_json_value(v: &serde_json::Value, top: bool) -> ClaimValue {
    use serde_json::Value;
    match v {
        Value::String(s) => ClaimValue::Str(s.clone()),
        Value::Number(n) => ClaimValue::Num(n.as_f64().unwrap_or(f64::NAN)),
        Value::Bool(b) => ClaimValue::Bool(*b),
        Value::Null => ClaimValue::Null,
        Value::Array(items) if top => ClaimValue::List(
            items
                .iter()
                .take(MAX_LIST_VALUES)
                .map(|i| from_json_value(i, false))
                .collect(),
        ),
        Value::Array(_) | Value::Object(_) => ClaimValue::Object,
    }
}

/// Decodes the payload as a property read returns it: the pairs encoding
/// (recent Envoy), else a serialized `google.protobuf.Struct`.
pub fn decode_payload(bytes: &[u8]) -> Result<Claims, ClaimsError> {
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(ClaimsError::TooLarge);
    }
    match pairs(bytes) {
        Some(fields) => Ok(Claims {
            fields: fields
                .into_iter()
                .take(MAX_CLAIMS)
                .filter_map(|(k, v)| {
                    Some((
                        std::str::from_utf8(k).ok()?.to_string(),
                        pairs_value(v, true),
                    ))
                })
                .collect(),
        }),
        None => decode_struct(bytes),
    }
}

/// The pairs encoding, read strictly (every size in bounds, every key and
/// value NUL-terminated, nothing after the last): `None` when `bytes` is
/// not one.
fn pairs(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let word = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let count = word(0)?;
    // Each pair takes at least 10 bytes (two sizes, two NULs).
    if count > bytes.len() / 10 {
        return None;
    }
    let mut sizes = Vec::with_capacity(count);
    for i in 0..count {
        sizes.push((word(4 + 8 * i)?, word(8 + 8 * i)?));
    }
    let mut at = 4 + 8 * count;
    let mut out = Vec::with_capacity(count);
    for (k, v) in sizes {
        let key = bytes.get(at..at.checked_add(k)?)?;
        at += k;
        if bytes.get(at) != Some(&0) {
            return None;
        }
        at += 1;
        let value = bytes.get(at..at.checked_add(v)?)?;
        at += v;
        if bytes.get(at) != Some(&0) {
            return None;
        }
        at += 1;
        out.push((key, value));
    }
    (at == bytes.len()).then_some(out)
}

/// A value of the pairs encoding (see the module's note on types).
fn pairs_value(value: &[u8], top: bool) -> ClaimValue {
    if let Some(items) = pairs(value).filter(|items| !items.is_empty() || value.len() == 4) {
        if !top || !items.iter().all(|(_, v)| v.is_empty()) {
            return ClaimValue::Object;
        }
        return ClaimValue::List(
            items
                .into_iter()
                .take(MAX_LIST_VALUES)
                .map(|(element, _)| match std::str::from_utf8(element) {
                    Ok(s) if !s.contains('\0') => ClaimValue::Str(s.to_string()),
                    _ => ClaimValue::Object,
                })
                .collect(),
        );
    }
    // NUL never appears in text an issuer writes; a number's eight bytes
    // nearly always hold one (or are not UTF-8 at all).
    let text = std::str::from_utf8(value)
        .ok()
        .filter(|s| !s.contains('\0'));
    match (value, text) {
        ([b @ (0 | 1)], _) => ClaimValue::Bool(*b == 1),
        (_, Some(s)) => ClaimValue::Str(s.to_string()),
        (_, None) => match <[u8; 8]>::try_from(value) {
            Ok(bits) => ClaimValue::Num(f64::from_le_bytes(bits)),
            Err(_) => ClaimValue::Object,
        },
    }
}

/// The pairs encoding of claims (tests and the fuzz target: what recent
/// Envoy writes, the reverse of [`decode_payload`]).
#[doc(hidden)]
pub fn encode_pairs(fields: &[(&str, ClaimValue)]) -> Vec<u8> {
    let values: Vec<(Vec<u8>, Vec<u8>)> = fields
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), pairs_bytes(v)))
        .collect();
    pack(&values)
}

fn pairs_bytes(value: &ClaimValue) -> Vec<u8> {
    match value {
        ClaimValue::Str(s) => s.as_bytes().to_vec(),
        ClaimValue::Num(n) => n.to_le_bytes().to_vec(),
        ClaimValue::Bool(b) => vec![u8::from(*b)],
        ClaimValue::Null => Vec::new(),
        ClaimValue::Object => pack(&[(b"k".to_vec(), b"v".to_vec())]),
        ClaimValue::List(items) => pack(
            &items
                .iter()
                .map(|i| (pairs_bytes(i), Vec::new()))
                .collect::<Vec<_>>(),
        ),
    }
}

fn pack(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let size = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let mut out = size(pairs.len()).to_vec();
    for (k, v) in pairs {
        out.extend_from_slice(&size(k.len()));
        out.extend_from_slice(&size(v.len()));
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Decodes a serialized `google.protobuf.Struct` (what older Envoy
/// releases return for a Struct in dynamic metadata).
pub fn decode_struct(bytes: &[u8]) -> Result<Claims, ClaimsError> {
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(ClaimsError::TooLarge);
    }
    let mut fields = Vec::new();
    let mut wire = Wire::new(bytes);
    while let Some((number, kind)) = wire.key()? {
        match (number, kind) {
            // map<string, Value> fields = 1: each entry a message of
            // key = 1 (string), value = 2 (Value).
            (1, LEN) => {
                let entry = wire.bytes()?;
                if fields.len() < MAX_CLAIMS {
                    let (name, value) = decode_entry(entry)?;
                    fields.push((name, value));
                }
            }
            _ => wire.skip(kind)?,
        }
    }
    Ok(Claims { fields })
}

fn decode_entry(bytes: &[u8]) -> Result<(String, ClaimValue), ClaimsError> {
    let mut wire = Wire::new(bytes);
    let (mut name, mut value) = (String::new(), ClaimValue::Null);
    while let Some((number, kind)) = wire.key()? {
        match (number, kind) {
            (1, LEN) => {
                name = std::str::from_utf8(wire.bytes()?)
                    .map_err(|_| ClaimsError::Malformed)?
                    .to_string();
            }
            (2, LEN) => value = decode_value(wire.bytes()?, true)?,
            _ => wire.skip(kind)?,
        }
    }
    Ok((name, value))
}

/// A `google.protobuf.Value`: null_value = 1, number_value = 2,
/// string_value = 3, bool_value = 4, struct_value = 5, list_value = 6.
fn decode_value(bytes: &[u8], top: bool) -> Result<ClaimValue, ClaimsError> {
    let mut wire = Wire::new(bytes);
    let mut value = ClaimValue::Null;
    while let Some((number, kind)) = wire.key()? {
        value = match (number, kind) {
            (1, VARINT) => {
                wire.varint()?;
                ClaimValue::Null
            }
            (2, I64) => ClaimValue::Num(f64::from_le_bytes(wire.fixed64()?)),
            (3, LEN) => ClaimValue::Str(
                std::str::from_utf8(wire.bytes()?)
                    .map_err(|_| ClaimsError::Malformed)?
                    .to_string(),
            ),
            (4, VARINT) => ClaimValue::Bool(wire.varint()? != 0),
            (5, LEN) => {
                wire.bytes()?;
                ClaimValue::Object
            }
            (6, LEN) if top => ClaimValue::List(decode_list(wire.bytes()?)?),
            (6, LEN) => {
                wire.bytes()?;
                ClaimValue::Object
            }
            _ => {
                wire.skip(kind)?;
                continue;
            }
        };
    }
    Ok(value)
}

/// A `google.protobuf.ListValue`: repeated Value values = 1.
fn decode_list(bytes: &[u8]) -> Result<Vec<ClaimValue>, ClaimsError> {
    let mut wire = Wire::new(bytes);
    let mut values = Vec::new();
    while let Some((number, kind)) = wire.key()? {
        match (number, kind) {
            (1, LEN) => {
                let item = wire.bytes()?;
                if values.len() < MAX_LIST_VALUES {
                    values.push(decode_value(item, false)?);
                }
            }
            _ => wire.skip(kind)?,
        }
    }
    Ok(values)
}

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const I32: u8 = 5;

/// Protobuf's wire format, read forward; every read is bounds-checked.
struct Wire<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Wire<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Wire { bytes, at: 0 }
    }

    fn varint(&mut self) -> Result<u64, ClaimsError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.at).ok_or(ClaimsError::Malformed)?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ClaimsError::Malformed)
    }

    /// The next field's number and wire type, or `None` at the end.
    fn key(&mut self) -> Result<Option<(u64, u8)>, ClaimsError> {
        if self.at >= self.bytes.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        Ok(Some((key >> 3, (key & 7) as u8)))
    }

    fn bytes(&mut self) -> Result<&'a [u8], ClaimsError> {
        let len = usize::try_from(self.varint()?).map_err(|_| ClaimsError::Malformed)?;
        let end = self.at.checked_add(len).ok_or(ClaimsError::Malformed)?;
        let out = self.bytes.get(self.at..end).ok_or(ClaimsError::Malformed)?;
        self.at = end;
        Ok(out)
    }

    fn fixed64(&mut self) -> Result<[u8; 8], ClaimsError> {
        let end = self.at.checked_add(8).ok_or(ClaimsError::Malformed)?;
        let out = self.bytes.get(self.at..end).ok_or(ClaimsError::Malformed)?;
        self.at = end;
        out.try_into().map_err(|_| ClaimsError::Malformed)
    }

    fn skip(&mut self, kind: u8) -> Result<(), ClaimsError> {
        match kind {
            VARINT => self.varint().map(|_| ()),
            I64 => self.fixed64().map(|_| ()),
            LEN => self.bytes().map(|_| ()),
            I32 => {
                let end = self.at.checked_add(4).ok_or(ClaimsError::Malformed)?;
                if end > self.bytes.len() {
                    return Err(ClaimsError::Malformed);
                }
                self.at = end;
                Ok(())
            }
            _ => Err(ClaimsError::Malformed),
        }
    }
}

/// Encodes claims as a serialized `google.protobuf.Struct` (tests and the
/// fuzz target: the reverse of [`decode_struct`]).
#[doc(hidden)]
pub fn encode_struct(fields: &[(&str, ClaimValue)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        let mut entry = Vec::new();
        put_len(&mut entry, 1, name.as_bytes());
        put_len(&mut entry, 2, &encode_value(value));
        put_len(&mut out, 1, &entry);
    }
    out
}

fn encode_value(value: &ClaimValue) -> Vec<u8> {
    let mut out = Vec::new();
    match value {
        ClaimValue::Null => {
            out.push(1 << 3);
            out.push(0);
        }
        ClaimValue::Num(n) => {
            out.push((2 << 3) | I64);
            out.extend_from_slice(&n.to_le_bytes());
        }
        ClaimValue::Str(s) => put_len(&mut out, 3, s.as_bytes()),
        ClaimValue::Bool(b) => {
            out.push(4 << 3);
            out.push(u8::from(*b));
        }
        ClaimValue::Object => put_len(&mut out, 5, &[]),
        ClaimValue::List(items) => {
            let mut list = Vec::new();
            for item in items {
                put_len(&mut list, 1, &encode_value(item));
            }
            put_len(&mut out, 6, &list);
        }
    }
    out
}

fn put_len(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
    out.push((number << 3) | LEN);
    let mut len = bytes.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups() -> ClaimValue {
        ClaimValue::List(vec![
            ClaimValue::Str("ml-team".into()),
            ClaimValue::Str("interns".into()),
        ])
    }

    #[test]
    fn a_payload_round_trips() {
        let fields = [
            ("sub", ClaimValue::Str("alice".into())),
            ("groups", groups()),
            ("exp", ClaimValue::Num(1.7e9)),
            ("email_verified", ClaimValue::Bool(true)),
            ("address", ClaimValue::Object),
            ("nothing", ClaimValue::Null),
        ];
        let claims = decode_struct(&encode_struct(&fields)).unwrap();
        for (name, value) in &fields {
            assert_eq!(claims.get(name), Some(value), "{name}");
        }
        assert_eq!(claims.get("team"), None);
    }

    #[test]
    fn nested_lists_and_objects_are_opaque() {
        let nested = ClaimValue::List(vec![ClaimValue::List(vec![ClaimValue::Str("x".into())])]);
        let claims = decode_struct(&encode_struct(&[("n", nested)])).unwrap();
        assert_eq!(
            claims.get("n"),
            Some(&ClaimValue::List(vec![ClaimValue::Object]))
        );
    }

    #[test]
    fn bad_payloads_are_refused_never_a_panic() {
        assert_eq!(
            decode_struct(&vec![0u8; MAX_PAYLOAD_BYTES + 1]),
            Err(ClaimsError::TooLarge)
        );
        let good = encode_struct(&[
            ("sub", ClaimValue::Str("alice".into())),
            ("groups", groups()),
        ]);
        for cut in 0..good.len() {
            // Every truncation is either a shorter valid payload or refused.
            let _ = decode_struct(&good[..cut]);
        }
        assert_eq!(decode_struct(&[0x0a, 0xff]), Err(ClaimsError::Malformed));
        assert_eq!(decode_struct(&[0x0f]), Err(ClaimsError::Malformed));
        assert_eq!(decode_struct(&[0x80; 11]), Err(ClaimsError::Malformed));
        assert!(decode_struct(&[]).unwrap().is_empty());
    }

    #[test]
    fn what_envoy_1_40_returns_is_read() {
        // Copied from a property read of jwt_authn's payload under Envoy 1.40.
        let seen = b"\x04\0\0\0\x03\0\0\0\x01\0\0\0\x03\0\0\0\x13\0\0\0\x03\0\0\0\x08\0\0\0\x06\0\0\0$\0\0\0sub\0a\0iss\0https://issuer.test\0exp\0\0\0\0\0e\xcd\xcdA\0groups\0\x02\0\0\0\x07\0\0\0\0\0\0\0\x05\0\0\0\0\0\0\0ml-team\0\0staff\0\0\0";
        let claims = decode_payload(seen).unwrap();
        assert_eq!(claims.get("sub"), Some(&ClaimValue::Str("a".into())));
        assert_eq!(
            claims.get("iss"),
            Some(&ClaimValue::Str("https://issuer.test".into()))
        );
        assert!(matches!(claims.get("exp"), Some(ClaimValue::Num(n)) if *n > 1e8));
        assert_eq!(
            claims.get("groups"),
            Some(&ClaimValue::List(vec![
                ClaimValue::Str("ml-team".into()),
                ClaimValue::Str("staff".into())
            ]))
        );
    }

    #[test]
    fn both_encodings_round_trip() {
        let fields = [
            ("sub", ClaimValue::Str("alice".into())),
            ("groups", groups()),
            ("exp", ClaimValue::Num(1.7e9)),
            ("email_verified", ClaimValue::Bool(true)),
            ("address", ClaimValue::Object),
            ("empty", ClaimValue::List(vec![])),
        ];
        for encoded in [encode_pairs(&fields), encode_struct(&fields)] {
            let claims = decode_payload(&encoded).unwrap();
            for (name, value) in &fields {
                assert_eq!(claims.get(name), Some(value), "{name}");
            }
        }
        // Text holding NUL is opaque, never a string; other control
        // characters are text (escaped wherever the filter writes it).
        let odd =
            decode_payload(&encode_pairs(&[("name", ClaimValue::Str("a\0b".into()))])).unwrap();
        assert_eq!(odd.get("name"), Some(&ClaimValue::Object));
        let line =
            decode_payload(&encode_pairs(&[("name", ClaimValue::Str("a\nb".into()))])).unwrap();
        assert_eq!(line.get("name"), Some(&ClaimValue::Str("a\nb".into())));
    }

    #[test]
    fn a_repeated_claim_reads_as_its_last() {
        let claims = decode_struct(&encode_struct(&[
            ("team", ClaimValue::Str("a".into())),
            ("team", ClaimValue::Str("b".into())),
        ]))
        .unwrap();
        assert_eq!(claims.get("team"), Some(&ClaimValue::Str("b".into())));
    }
}
