//! The CBOR of Smithy RPC v2 (`smithy-protocol: rpc-v2-cbor`), to and from `serde_json::Value`:
//! timestamps (tag 1, epoch seconds) decode to numbers, and the fields named in
//! [`TIMESTAMP_FIELDS`] encode back as tag 1. Integers stay integers and doubles stay doubles
//! (the SDK decodes a `Double` member only from a CBOR float).

use minicbor::data::{IanaTag, Tag, Token};
use serde_json::{Map, Number, Value};

/// Output members of type `Timestamp` (single values or lists of them).
pub const TIMESTAMP_FIELDS: &[&str] = &[
    "Timestamps",
    "AlarmConfigurationUpdatedTimestamp",
    "StateUpdatedTimestamp",
    "StateTransitionedTimestamp",
];

/// Decodes one CBOR data item (definite or indefinite lengths).
pub fn decode(bytes: &[u8]) -> Result<Value, String> {
    if bytes.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let mut t = minicbor::decode::Tokenizer::new(bytes);
    item(&mut t)
}

fn next<'b>(t: &mut minicbor::decode::Tokenizer<'_, 'b>) -> Result<Token<'b>, String> {
    t.token().map_err(|e| format!("malformed CBOR: {e}"))
}

fn item(t: &mut minicbor::decode::Tokenizer<'_, '_>) -> Result<Value, String> {
    let tok = next(t)?;
    value_of(t, tok)
}

fn value_of<'b>(
    t: &mut minicbor::decode::Tokenizer<'_, 'b>,
    tok: Token<'b>,
) -> Result<Value, String> {
    let int = |n: i128| -> Value {
        i64::try_from(n)
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(n as f64))
    };
    let float = |f: f64| Number::from_f64(f).map_or(Value::Null, Value::Number);
    Ok(match tok {
        Token::Bool(b) => Value::Bool(b),
        Token::U8(n) => int(n.into()),
        Token::U16(n) => int(n.into()),
        Token::U32(n) => int(n.into()),
        Token::U64(n) => int(n.into()),
        Token::I8(n) => int(n.into()),
        Token::I16(n) => int(n.into()),
        Token::I32(n) => int(n.into()),
        Token::I64(n) => int(n.into()),
        Token::Int(n) => int(i128::from(n)),
        Token::F16(f) | Token::F32(f) => float(f.into()),
        Token::F64(f) => float(f),
        Token::String(s) => Value::String(s.to_string()),
        Token::Bytes(b) => Value::String(hex::encode(b)),
        Token::Null | Token::Undefined | Token::Simple(_) => Value::Null,
        Token::Tag(_) => {
            // Tag 1 (epoch seconds) and anything else: the tagged item itself.
            let v = item(t)?;
            match v {
                Value::Number(n) => Value::Number(n),
                other => other,
            }
        }
        Token::Array(n) => {
            let mut out = Vec::new();
            for _ in 0..n {
                out.push(item(t)?);
            }
            Value::Array(out)
        }
        Token::Map(n) => {
            let mut out = Map::new();
            for _ in 0..n {
                let k = key(item(t)?)?;
                out.insert(k, item(t)?);
            }
            Value::Object(out)
        }
        Token::BeginArray => {
            let mut out = Vec::new();
            loop {
                match next(t)? {
                    Token::Break => break,
                    tok => out.push(value_of(t, tok)?),
                }
            }
            Value::Array(out)
        }
        Token::BeginMap => {
            let mut out = Map::new();
            loop {
                match next(t)? {
                    Token::Break => break,
                    tok => {
                        let k = key(value_of(t, tok)?)?;
                        out.insert(k, item(t)?);
                    }
                }
            }
            Value::Object(out)
        }
        Token::BeginString => {
            let mut s = String::new();
            loop {
                match next(t)? {
                    Token::Break => break,
                    Token::String(part) => s.push_str(part),
                    other => return Err(format!("malformed CBOR: {other} in a text string")),
                }
            }
            Value::String(s)
        }
        Token::BeginBytes => {
            let mut b = Vec::new();
            loop {
                match next(t)? {
                    Token::Break => break,
                    Token::Bytes(part) => b.extend_from_slice(part),
                    other => return Err(format!("malformed CBOR: {other} in a byte string")),
                }
            }
            Value::String(hex::encode(b))
        }
        Token::Break => return Err("malformed CBOR: unexpected break".into()),
    })
}

fn key(v: Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(format!(
            "malformed CBOR: map key {other} is not a text string"
        )),
    }
}

/// Encodes `v` with definite lengths; members named in [`TIMESTAMP_FIELDS`] as tag 1.
pub fn encode(v: &Value) -> Vec<u8> {
    let mut e = minicbor::Encoder::new(Vec::new());
    put(&mut e, v, false);
    e.into_writer()
}

fn put(e: &mut minicbor::Encoder<Vec<u8>>, v: &Value, timestamp: bool) {
    // Writing to a Vec cannot fail.
    match v {
        Value::Null => {
            e.null().unwrap();
        }
        Value::Bool(b) => {
            e.bool(*b).unwrap();
        }
        Value::Number(n) => {
            if timestamp {
                e.tag(Tag::from(IanaTag::Timestamp)).unwrap();
                e.f64(n.as_f64().unwrap_or_default()).unwrap();
            } else if let Some(i) = n.as_i64() {
                e.i64(i).unwrap();
            } else if let Some(u) = n.as_u64() {
                e.u64(u).unwrap();
            } else {
                e.f64(n.as_f64().unwrap_or_default()).unwrap();
            }
        }
        Value::String(s) => {
            e.str(s).unwrap();
        }
        Value::Array(items) => {
            e.array(items.len() as u64).unwrap();
            for i in items {
                put(e, i, timestamp);
            }
        }
        Value::Object(m) => {
            e.map(m.len() as u64).unwrap();
            for (k, v) in m {
                e.str(k).unwrap();
                put(e, v, TIMESTAMP_FIELDS.contains(&k.as_str()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_keep_integers_doubles_and_timestamps() {
        let v = json!({"Period": 60, "Threshold": 5.0, "Timestamps": [1.7e9], "Id": "q"});
        let bytes = encode(&v);
        // Tag 1 is 0xc1; a double is 0xfb.
        assert!(bytes.windows(2).any(|w| w == [0xc1, 0xfb]));
        assert_eq!(decode(&bytes).unwrap(), v);
    }

    #[test]
    fn indefinite_lengths_decode() {
        // {_ "a": [_ 1, 2], "b": (_ "x", "y")}
        let bytes = [
            0xbf, 0x61, b'a', 0x9f, 0x01, 0x02, 0xff, 0x61, b'b', 0x7f, 0x61, b'x', 0x61, b'y',
            0xff, 0xff,
        ];
        assert_eq!(decode(&bytes).unwrap(), json!({"a": [1, 2], "b": "xy"}));
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(decode(&[0xbf, 0x61]).is_err());
    }
}
