//! Configuration, layered with figment: built-in defaults < `config.toml` (the XDG
//! config dir, or `--config`) < `CCOTEL_*` environment variables < command-line
//! flags. An unknown key or a bad value is an error that names the key and where
//! the value came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::session::PriceOverride;

/// Environment variables read as config keys, after the `CCOTEL_` prefix.
const ENV_KEYS: &[&str] = &["state_dir", "timezone", "threads", "max_line_bytes"];

/// Every setting ccotel reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the manifest lives. Default: `$XDG_STATE_HOME/ccotel`, else
    /// `~/.local/state/ccotel`.
    pub state_dir: Option<PathBuf>,
    /// Claude config directories to read `projects/` from. Empty: the
    /// `CLAUDE_CONFIG_DIR` list, else `~/.claude` and `~/.config/claude`.
    pub claude_config_dirs: Vec<PathBuf>,
    /// IANA time zone for dates in reports. Default: the system's.
    pub timezone: Option<String>,
    /// Reader threads; 0 means one per CPU.
    pub threads: usize,
    /// Lines longer than this many bytes are decoded by streaming, not in memory.
    pub max_line_bytes: usize,
    /// Model prices in USD per million tokens, replacing or adding to the built-in
    /// table: `[pricing."model-id"] input = 3.0, output = 15.0`.
    pub pricing: BTreeMap<String, PriceOverride>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: None,
            claude_config_dirs: Vec::new(),
            timezone: None,
            threads: 0,
            max_line_bytes: crate::source::DEFAULT_MAX_INLINE_LINE,
            pricing: BTreeMap::new(),
        }
    }
}

/// Values given on the command line; `None` leaves lower layers in force.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// A config error, naming the key and where its value came from.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

/// The effective configuration and where it came from.
pub struct Loaded {
    pub config: Config,
    /// The config file consulted, and whether it exists.
    pub file: Option<(PathBuf, bool)>,
    figment: Figment,
}

/// The process environment ccotel consults, passed in so tests can set it.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub home: Option<PathBuf>,
    pub xdg_config_home: Option<PathBuf>,
    pub xdg_state_home: Option<PathBuf>,
    pub claude_config_dir: Option<String>,
}

impl Environment {
    /// The real environment of this process.
    pub fn from_process() -> Self {
        let path = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Environment {
            home: path("HOME"),
            xdg_config_home: path("XDG_CONFIG_HOME"),
            xdg_state_home: path("XDG_STATE_HOME"),
            claude_config_dir: std::env::var("CLAUDE_CONFIG_DIR").ok(),
        }
    }

    fn default_config_file(&self) -> Option<PathBuf> {
        let base = self
            .xdg_config_home
            .clone()
            .or_else(|| self.home.as_ref().map(|home| home.join(".config")))?;
        Some(base.join("ccotel").join("config.toml"))
    }
}

/// Loads the layered configuration. `explicit_file` (from `--config`) must exist.
pub fn load(
    explicit_file: Option<&Path>,
    overrides: &Overrides,
    environment: &Environment,
) -> Result<Loaded, ConfigError> {
    let file = match explicit_file {
        Some(path) if !path.is_file() => {
            return Err(ConfigError(format!(
                "config file {} does not exist",
                path.display()
            )))
        }
        Some(path) => Some(path.to_owned()),
        None => environment.default_config_file(),
    };
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = file.as_ref().filter(|path| path.is_file()) {
        figment = figment.merge(Toml::file_exact(path));
    }
    let figment = figment
        .merge(Env::prefixed("CCOTEL_").only(ENV_KEYS))
        .merge(Serialized::defaults(overrides));
    let config: Config = figment.extract().map_err(|error| describe(&error))?;
    let file = file.map(|path| {
        let exists = path.is_file();
        (path, exists)
    });
    let loaded = Loaded {
        config,
        file,
        figment,
    };
    loaded.time_zone()?;
    Ok(loaded)
}

fn describe(errors: &figment::Error) -> ConfigError {
    let lines: Vec<String> = errors
        .clone()
        .into_iter()
        .map(|error| {
            let key = if error.path.is_empty() {
                "(top level)".to_owned()
            } else {
                error.path.join(".")
            };
            let source = error
                .metadata
                .as_ref()
                .map(|meta| format!(" in {}", origin(meta)))
                .unwrap_or_default();
            format!("config key `{key}`{source}: {}", error.kind)
        })
        .collect();
    ConfigError(lines.join("\n"))
}

/// Where a value came from: a file's full path (figment would shorten it relative
/// to the working directory), or the provider's name.
fn origin(meta: &figment::Metadata) -> String {
    match &meta.source {
        Some(figment::Source::File(path)) => path.display().to_string(),
        Some(source) => source.to_string(),
        None => meta.name.to_string(),
    }
}

impl Loaded {
    /// Where a key's value came from, for error messages.
    fn source_of(&self, key: &str) -> String {
        match self.figment.find_metadata(key) {
            Some(meta) => origin(meta),
            None => "defaults".into(),
        }
    }

    /// The time zone for report dates.
    pub fn time_zone(&self) -> Result<jiff::tz::TimeZone, ConfigError> {
        match &self.config.timezone {
            None => Ok(jiff::tz::TimeZone::system()),
            Some(name) => jiff::tz::TimeZone::get(name).map_err(|error| {
                ConfigError(format!(
                    "config key `timezone` in {}: {name:?} is not a known time zone ({error})",
                    self.source_of("timezone")
                ))
            }),
        }
    }

    /// The state directory.
    pub fn state_dir(&self, environment: &Environment) -> Result<PathBuf, ConfigError> {
        if let Some(dir) = &self.config.state_dir {
            return Ok(dir.clone());
        }
        environment
            .xdg_state_home
            .clone()
            .or_else(|| {
                environment
                    .home
                    .as_ref()
                    .map(|home| home.join(".local").join("state"))
            })
            .map(|base| base.join("ccotel"))
            .ok_or_else(|| {
                ConfigError("no state directory: set --state-dir, CCOTEL_STATE_DIR or HOME".into())
            })
    }

    /// The Claude config directories to scan.
    pub fn claude_roots(&self, environment: &Environment) -> Vec<PathBuf> {
        if let Some(roots) = crate::source::roots_from_env(environment.claude_config_dir.as_deref())
        {
            return roots;
        }
        if !self.config.claude_config_dirs.is_empty() {
            return self.config.claude_config_dirs.clone();
        }
        environment
            .home
            .as_deref()
            .map(crate::source::default_roots)
            .unwrap_or_default()
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn to_masked_toml(&self) -> String {
        let mut value = match toml::Value::try_from(&self.config) {
            Ok(value) => value,
            Err(error) => return format!("# cannot render config: {error}\n"),
        };
        mask_secrets(&mut value);
        toml::to_string_pretty(&value).unwrap_or_default()
    }
}

/// Replaces the value of every key that names a secret with `"****"`.
fn mask_secrets(value: &mut toml::Value) {
    if let toml::Value::Table(table) = value {
        for (key, item) in table.iter_mut() {
            let lower = key.to_ascii_lowercase();
            if [
                "password",
                "secret",
                "token",
                "authorization",
                "headers",
                "api_key",
            ]
            .iter()
            .any(|word| lower.contains(word))
            {
                *item = toml::Value::String("****".into());
            } else {
                mask_secrets(item);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(dir: &Path) -> Environment {
        Environment {
            home: Some(dir.to_owned()),
            ..Environment::default()
        }
    }

    #[test]
    fn unknown_keys_name_the_key_and_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("config.toml");
        std::fs::write(&file, "timezone = \"UTC\"\nstate_dri = \"/tmp/x\"\n").expect("write");
        let error = load(Some(&file), &Overrides::default(), &environment(dir.path()))
            .err()
            .expect("error");
        let message = error.to_string();
        assert!(message.contains("state_dri"), "{message}");
        assert!(message.contains(&file.display().to_string()), "{message}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("config.toml");
        std::fs::write(
            &file,
            "[pricing.my-model]\ninput = \"cheap\"\noutput = 1.0\n",
        )
        .expect("write");
        let message = load(Some(&file), &Overrides::default(), &environment(dir.path()))
            .err()
            .expect("error")
            .to_string();
        assert!(message.contains("pricing.my-model.input"), "{message}");
        std::fs::write(&file, "timezone = \"Mars/Olympus\"\n").expect("write");
        let message = load(Some(&file), &Overrides::default(), &environment(dir.path()))
            .err()
            .expect("error")
            .to_string();
        assert!(
            message.contains("`timezone`") && message.contains("Mars/Olympus"),
            "{message}"
        );
        assert!(message.contains(&file.display().to_string()), "{message}");
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("config.toml");
        std::fs::write(&file, "timezone = \"Asia/Tokyo\"\nthreads = 3\n").expect("write");
        let env = environment(dir.path());
        let loaded = load(Some(&file), &Overrides::default(), &env).expect("load");
        assert_eq!(loaded.config.timezone.as_deref(), Some("Asia/Tokyo"));
        assert_eq!(loaded.config.threads, 3);
        let overrides = Overrides {
            timezone: Some("UTC".into()),
            state_dir: Some("/tmp/s".into()),
        };
        let loaded = load(Some(&file), &overrides, &env).expect("load");
        assert_eq!(loaded.config.timezone.as_deref(), Some("UTC"));
        assert_eq!(
            loaded.state_dir(&env).expect("dir"),
            PathBuf::from("/tmp/s")
        );
        let missing = dir.path().join("nope.toml");
        assert!(load(Some(&missing), &Overrides::default(), &env).is_err());
    }

    #[test]
    fn defaults_follow_xdg_and_claude_config_dir() {
        let env = Environment {
            home: Some("/home/u".into()),
            xdg_state_home: Some("/xdg/state".into()),
            claude_config_dir: Some("/a,/b".into()),
            ..Environment::default()
        };
        let loaded = load(None, &Overrides::default(), &env).expect("load");
        assert_eq!(
            loaded.state_dir(&env).expect("dir"),
            PathBuf::from("/xdg/state/ccotel")
        );
        assert_eq!(
            loaded.claude_roots(&env),
            [PathBuf::from("/a"), PathBuf::from("/b")]
        );
        let plain = Environment {
            home: Some("/home/u".into()),
            ..Environment::default()
        };
        assert_eq!(
            loaded.state_dir(&plain).expect("dir"),
            PathBuf::from("/home/u/.local/state/ccotel")
        );
        assert_eq!(
            loaded.claude_roots(&plain),
            [
                PathBuf::from("/home/u/.claude"),
                PathBuf::from("/home/u/.config/claude")
            ]
        );
    }

    #[test]
    fn secrets_are_masked() {
        let mut value: toml::Value =
            toml::from_str("[otlp]\nheaders = \"x=1\"\npassword = \"p\"\nurl = \"u\"\n")
                .expect("toml");
        mask_secrets(&mut value);
        let text = toml::to_string(&value).expect("render");
        assert!(!text.contains("x=1") && !text.contains("\"p\""), "{text}");
        assert!(text.contains("\"u\""));
    }
}
