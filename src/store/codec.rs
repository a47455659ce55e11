//! The one record codec: a version byte followed by bincode (standard config) of the
//! serde record. Changing a record's shape means a new version byte and a migration in
//! `store::migrate`, never a silent reinterpretation of old bytes. Records must not use
//! `skip_serializing_if`: bincode is not self-describing.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StoreError;

/// Version byte of every record written by this build.
pub const RECORD_VERSION: u8 = 1;

/// Encodes a record.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![RECORD_VERSION];
    let body = bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| StoreError::Codec(e.to_string()))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a record, refusing unknown versions and trailing garbage.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&RECORD_VERSION, body)) => {
            let (value, used) =
                bincode::serde::decode_from_slice(body, bincode::config::standard())
                    .map_err(|e| StoreError::Codec(e.to_string()))?;
            if used != body.len() {
                return Err(StoreError::Codec("trailing bytes after record".into()));
            }
            Ok(value)
        }
        Some((v, _)) => Err(StoreError::Codec(format!("unknown record version {v}"))),
        None => Err(StoreError::Codec("empty record".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct R {
        a: String,
        b: Option<u64>,
        c: Vec<String>,
    }

    #[test]
    fn round_trip_and_refusals() {
        let r = R {
            a: "x".into(),
            b: Some(7),
            c: vec!["y".into()],
        };
        let bytes = encode(&r).unwrap();
        assert_eq!(decode::<R>(&bytes).unwrap(), r);
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert!(decode::<R>(&bad).is_err());
        let mut long = bytes;
        long.push(0);
        assert!(decode::<R>(&long).is_err());
        assert!(decode::<R>(&[]).is_err());
    }
}
