//! Zig-zag variable-length integers, as Kafka's records use them (protobuf's encoding).

use super::error::RecordError;

const MAX_VARINT_BYTES: usize = 5;
const MAX_VARLONG_BYTES: usize = 10;

/// Appends `value` as a zig-zag varint (at most 5 bytes).
pub fn put_varint(out: &mut Vec<u8>, value: i32) {
    let zigzag = ((value << 1) ^ (value >> 31)) as u32;
    put_unsigned(out, u64::from(zigzag));
}

/// Appends `value` as a zig-zag varlong (at most 10 bytes).
pub fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let zigzag = ((value << 1) ^ (value >> 63)) as u64;
    put_unsigned(out, zigzag);
}

/// Bytes [`put_varint`] writes for `value`, for sizing a record before writing it.
pub fn varint_len(value: i32) -> usize {
    let zigzag = ((value << 1) ^ (value >> 31)) as u32;
    unsigned_len(u64::from(zigzag))
}

/// Bytes [`put_varlong`] writes for `value`.
pub fn varlong_len(value: i64) -> usize {
    unsigned_len(((value << 1) ^ (value >> 63)) as u64)
}

fn put_unsigned(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn unsigned_len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Reads a zig-zag varint from the front of `input`, advancing it.
pub fn get_varint(input: &mut &[u8]) -> Result<i32, RecordError> {
    let raw = get_unsigned(input, MAX_VARINT_BYTES)?;
    let raw = u32::try_from(raw).map_err(|_| RecordError::MalformedVarint)?;
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// Reads a zig-zag varlong from the front of `input`, advancing it.
pub fn get_varlong(input: &mut &[u8]) -> Result<i64, RecordError> {
    let raw = get_unsigned(input, MAX_VARLONG_BYTES)?;
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

fn get_unsigned(input: &mut &[u8], max_bytes: usize) -> Result<u64, RecordError> {
    // Most of a record's varints fit one byte (its deltas, a null key's length, its header
    // count): the loop below was over a quarter of a consumer's instructions at 100-byte
    // records.
    if let Some((&byte, rest)) = input.split_first()
        && byte < 0x80
    {
        *input = rest;
        return Ok(u64::from(byte));
    }
    let mut value: u64 = 0;
    for (index, &byte) in input.iter().enumerate().take(max_bytes) {
        let shift = 7 * index as u32;
        let bits = u64::from(byte & 0x7f);
        // The tenth byte of a varlong may only carry the top bit of the u64.
        if shift == 63 && bits > 1 {
            return Err(RecordError::MalformedVarint);
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            *input = &input[index + 1..];
            return Ok(value);
        }
    }
    if input.len() < max_bytes {
        Err(RecordError::Truncated {
            needed: input.len() + 1,
            available: input.len(),
        })
    } else {
        Err(RecordError::MalformedVarint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trips_edges() {
        for value in [0, 1, -1, 63, -64, 64, 300, i32::MAX, i32::MIN] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value));
            let mut input = out.as_slice();
            assert_eq!(get_varint(&mut input).unwrap(), value);
            assert!(input.is_empty());
        }
    }

    #[test]
    fn varlong_round_trips_edges() {
        for value in [0, 1, -1, 1 << 40, -(1 << 40), i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            put_varlong(&mut out, value);
            assert_eq!(out.len(), varlong_len(value));
            let mut input = out.as_slice();
            assert_eq!(get_varlong(&mut input).unwrap(), value);
        }
    }

    #[test]
    fn known_encodings() {
        let mut out = Vec::new();
        put_varint(&mut out, -1);
        put_varint(&mut out, 5);
        put_varint(&mut out, 300);
        assert_eq!(out, [0x01, 0x0a, 0xd8, 0x04]);
    }

    #[test]
    fn rejects_overlong_and_truncated() {
        let mut overlong: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(matches!(
            get_varint(&mut overlong),
            Err(RecordError::MalformedVarint)
        ));
        let mut truncated: &[u8] = &[0x80];
        assert!(matches!(
            get_varint(&mut truncated),
            Err(RecordError::Truncated { .. })
        ));
        let mut too_big: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0x7f];
        assert!(get_varint(&mut too_big).is_err());
    }
}
