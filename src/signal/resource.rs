//! The resource every record carries: `service.name=claude-code`, the Claude Code
//! version, the host and OS user, and `OTEL_RESOURCE_ATTRIBUTES`.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// Attributes shared by every resource this process sends.
#[derive(Debug, Clone, Default)]
pub struct ResourceBase {
    attributes: Vec<(String, String)>,
}

impl ResourceBase {
    /// The host and user of this machine plus `OTEL_RESOURCE_ATTRIBUTES`
    /// (`key=value,...`, percent-encoded values), which win over the defaults.
    pub fn from_env(resource_attributes: Option<&str>) -> ResourceBase {
        let mut attributes = vec![("service.name".to_owned(), "claude-code".to_owned())];
        if let Some(host) = host_name() {
            attributes.push(("host.name".to_owned(), host));
        }
        if let Ok(user) = std::env::var("USER").or_else(|_| std::env::var("USERNAME")) {
            attributes.push(("user.name".to_owned(), user));
        }
        attributes.push(("os.type".to_owned(), std::env::consts::OS.to_owned()));
        for (key, value) in parse_resource_attributes(resource_attributes.unwrap_or("")) {
            attributes.retain(|(k, _)| *k != key);
            attributes.push((key, value));
        }
        ResourceBase { attributes }
    }

    /// The resource attributes as strings, for table rows.
    pub fn pairs(&self, version: Option<&str>) -> Vec<(String, String)> {
        let mut pairs = self.attributes.clone();
        if let Some(version) = version {
            if !pairs.iter().any(|(k, _)| k == "service.version") {
                pairs.push(("service.version".to_owned(), version.to_owned()));
            }
        }
        pairs
    }

    /// The service name rows are filed under.
    pub fn service_name(&self) -> String {
        self.attributes
            .iter()
            .find(|(k, _)| k == "service.name")
            .map_or_else(|| "claude-code".to_owned(), |(_, v)| v.clone())
    }

    /// The resource for records written by one Claude Code version.
    pub fn resource(&self, version: Option<&str>) -> Resource {
        let mut attributes: Vec<KeyValue> = self
            .attributes
            .iter()
            .map(|(k, v)| string_kv(k, v))
            .collect();
        if let Some(version) = version {
            if !self.attributes.iter().any(|(k, _)| k == "service.version") {
                attributes.push(string_kv("service.version", version));
            }
        }
        Resource {
            attributes,
            ..Resource::default()
        }
    }
}

/// The instrumentation scope of everything ccotel derives.
pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "ccotel".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..InstrumentationScope::default()
    }
}

pub fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..KeyValue::default()
    }
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
}

/// `key1=value1,key2=value2`, values percent-decoded, malformed pairs skipped.
pub fn parse_resource_attributes(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let key = key.trim();
            (!key.is_empty()).then(|| (key.to_owned(), percent_decode(value.trim())))
        })
        .collect()
}

pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_attributes_are_parsed_and_decoded() {
        let parsed = parse_resource_attributes("team=a%20b, env=prod,bad,=x");
        assert_eq!(
            parsed,
            vec![
                ("team".to_owned(), "a b".to_owned()),
                ("env".to_owned(), "prod".to_owned())
            ]
        );
    }

    #[test]
    fn environment_overrides_defaults() {
        let base = ResourceBase::from_env(Some("service.name=mine"));
        let resource = base.resource(Some("2.1.0"));
        let names: Vec<_> = resource
            .attributes
            .iter()
            .filter(|kv| kv.key == "service.name")
            .collect();
        assert_eq!(names.len(), 1);
        assert!(resource
            .attributes
            .iter()
            .any(|kv| kv.key == "service.version"));
    }
}
