//! Serde adapters for settings that may be off or unset (`""`).

/// An address that may be off: `""` (or `off`) is `None`.
pub(crate) mod optional_addr {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(a) => s.collect_str(a),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let v = String::deserialize(d)?;
        match v.trim() {
            "" | "off" => Ok(None),
            a => a.parse().map(Some).map_err(|e| {
                serde::de::Error::custom(format!("{a:?} is not HOST:PORT ({e}); \"\" turns it off"))
            }),
        }
    }
}

/// A setting that may be unset: `""` in TOML or the environment is `None`, and
/// `None` is written back as `""`.
pub(crate) mod empty_is_none {
    use std::ffi::OsStr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S, T>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error>
    where
        S: Serializer,
        T: AsRef<OsStr>,
    {
        match v {
            Some(v) => s.serialize_str(&v.as_ref().to_string_lossy()),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: From<String>,
    {
        let v = String::deserialize(d)?;
        Ok((!v.is_empty()).then(|| T::from(v)))
    }
}
