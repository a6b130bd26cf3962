//! Reading `a{sv}` options: each value of the expected kind, or an `InvalidArgument` that
//! names the key and the type the caller sent.

use zbus::Variant;

use crate::CabinError;

/// Any integer type that holds a non-negative value (callers send `u`, `t`, `i` or `x`).
pub fn unsigned(key: &str, value: &Variant<'_>) -> Result<u64, CabinError> {
    let v: Option<i128> = match value {
        Variant::U8(v) => Some((*v).into()),
        Variant::U16(v) => Some((*v).into()),
        Variant::U32(v) => Some((*v).into()),
        Variant::U64(v) => Some((*v).into()),
        Variant::I16(v) => Some((*v).into()),
        Variant::I32(v) => Some((*v).into()),
        Variant::I64(v) => Some((*v).into()),
        _ => None,
    };
    match v {
        Some(v) if v >= 0 => Ok(v as u64),
        Some(v) => Err(CabinError::invalid_argument(format!(
            "{key} must not be negative, got {v}"
        ))),
        None => Err(CabinError::invalid_argument(format!(
            "{key} must be an unsigned integer (t or u), got type {}",
            value.value_signature()
        ))),
    }
}

/// Any integer type (`x`, `i`, `t`, `u`, ...), e.g. a Unix time.
pub fn integer(key: &str, value: &Variant<'_>) -> Result<i64, CabinError> {
    match value {
        Variant::U64(v) => i64::try_from(*v)
            .map_err(|_| CabinError::invalid_argument(format!("{key} is out of range: {v}"))),
        Variant::I64(v) => Ok(*v),
        other => unsigned(key, other)
            .map(|v| v as i64)
            .or_else(|_| match other {
                Variant::I32(v) => Ok((*v).into()),
                Variant::I16(v) => Ok((*v).into()),
                _ => Err(CabinError::invalid_argument(format!(
                    "{key} must be an integer (x or t), got type {}",
                    other.value_signature()
                ))),
            }),
    }
}

pub fn string(key: &str, value: &Variant<'_>) -> Result<String, CabinError> {
    match value {
        Variant::Str(s) => Ok(s.to_string()),
        other => Err(CabinError::invalid_argument(format!(
            "{key} must be a string, got type {}",
            other.value_signature()
        ))),
    }
}

pub fn boolean(key: &str, value: &Variant<'_>) -> Result<bool, CabinError> {
    match value {
        Variant::Bool(b) => Ok(*b),
        other => Err(CabinError::invalid_argument(format!(
            "{key} must be a boolean, got type {}",
            other.value_signature()
        ))),
    }
}

/// An array of strings (`as`).
pub fn strings(key: &str, value: &Variant<'_>) -> Result<Vec<String>, CabinError> {
    let wrong = || {
        CabinError::invalid_argument(format!(
            "{key} must be an array of strings (as), got type {}",
            value.value_signature()
        ))
    };
    match value {
        Variant::Array(a) => a
            .iter()
            .map(|v| match v {
                Variant::Str(s) => Ok(s.to_string()),
                _ => Err(wrong()),
            })
            .collect(),
        _ => Err(wrong()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_of_the_wrong_kind_are_named() {
        assert_eq!(unsigned("seed", &Variant::from(7u32)).unwrap(), 7);
        assert_eq!(unsigned("seed", &Variant::from(7i64)).unwrap(), 7);
        let e = unsigned("seed", &Variant::from(-1i32)).unwrap_err();
        assert!(format!("{e:?}").contains("seed must not be negative"));
        let e = unsigned("seed", &Variant::from("x")).unwrap_err();
        assert!(format!("{e:?}").contains("got type s"));
        assert_eq!(integer("t", &Variant::from(-5i64)).unwrap(), -5);
        assert!(integer("t", &Variant::from(u64::MAX)).is_err());
        assert!(boolean("b", &Variant::from(1u32)).is_err());
        assert_eq!(
            strings("c", &Variant::from(vec!["app", "hmi"])).unwrap(),
            ["app", "hmi"]
        );
        assert!(strings("c", &Variant::from(vec![1u32])).is_err());
    }
}
