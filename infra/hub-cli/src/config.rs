//! Where `hub-cli` finds the hub and the client it acts as: flags, then
//! environment variables, then a named profile of the config file
//! (`$HUB_CONFIG`, else `~/.config/chhub/config.toml`):
//!
//! ```toml
//! [profiles.local-publisher]
//! url = "http://127.0.0.1:3000"
//! client_id = "demo-publisher"
//! key_file = "/home/me/hub/.local/clients/demo-publisher.pem"
//! key_id = "demo-publisher-1"        # default: <client_id>-1
//! ods_code = "A83627"               # the client's organisation
//! subscriber_id = "..."              # a subscriber's own id
//! queue_url = "..."                  # a subscriber's queue, for `hub-cli poll`
//! emulator = "http://127.0.0.1:4566" # the local stack's AWS emulator
//! ```
//!
//! The profile is `--profile`, else HUB_PROFILE, else `default` when the
//! file has one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One profile's settings; every one optional in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub url: Option<String>,
    pub client_id: Option<String>,
    pub key_file: Option<PathBuf>,
    pub key_id: Option<String>,
    pub ods_code: Option<String>,
    pub subscriber_id: Option<String>,
    pub queue_url: Option<String>,
    pub emulator: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// The environment variable of each setting.
pub const ENVIRONMENT: [(&str, &str); 8] = [
    ("url", "HUB_URL"),
    ("client_id", "HUB_CLIENT_ID"),
    ("key_file", "HUB_KEY_FILE"),
    ("key_id", "HUB_KEY_ID"),
    ("ods_code", "HUB_ODS_CODE"),
    ("subscriber_id", "HUB_SUBSCRIBER_ID"),
    ("queue_url", "HUB_QUEUE_URL"),
    ("emulator", "HUB_EMULATOR"),
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid config file: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("no profile '{name}' in {path} (it has: {known})")]
    UnknownProfile {
        name: String,
        path: PathBuf,
        known: String,
    },
    #[error("profile '{name}' was asked for, but there is no config file ({path})")]
    NoFile { name: String, path: PathBuf },
    #[error("no {setting}: give --{flag}, set {variable}, or set {setting} in a profile of {path}")]
    Missing {
        setting: &'static str,
        flag: String,
        variable: &'static str,
        path: PathBuf,
    },
}

/// The config file's path: HUB_CONFIG, else $XDG_CONFIG_HOME/chhub/config.toml,
/// else ~/.config/chhub/config.toml.
pub fn config_path(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(path) = env("HUB_CONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let base = env("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| Path::new(&home).join(".config")))
        .unwrap_or_else(|| PathBuf::from(".config"));
    base.join("chhub").join("config.toml")
}

/// Parses a config file's text.
pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Invalid {
        path: path.to_owned(),
        message: e.message().to_owned(),
    })
}

/// Everything resolved: flags over environment over the profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub profile: Profile,
    /// The config file looked at, for messages.
    pub path: PathBuf,
}

impl Settings {
    /// Resolves `flags` over the environment over the profile named by
    /// `profile_name` (else HUB_PROFILE, else `default` if there is one).
    pub fn resolve(
        flags: &Profile,
        profile_name: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let path = config_path(env);
        let file = match std::fs::read_to_string(&path) {
            Ok(text) => Some(parse(&path, &text)?),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        let from_env = env("HUB_PROFILE").filter(|name| !name.is_empty());
        let name = profile_name.map(str::to_owned).or(from_env);
        let profile = match (&name, &file) {
            (Some(name), Some(file)) => {
                file.profiles
                    .get(name)
                    .cloned()
                    .ok_or_else(|| ConfigError::UnknownProfile {
                        name: name.clone(),
                        path: path.clone(),
                        known: file.profiles.keys().cloned().collect::<Vec<_>>().join(", "),
                    })?
            }
            (Some(name), None) => {
                return Err(ConfigError::NoFile {
                    name: name.clone(),
                    path,
                });
            }
            (None, Some(file)) => file.profiles.get("default").cloned().unwrap_or_default(),
            (None, None) => Profile::default(),
        };
        let variable = |setting: &str| {
            ENVIRONMENT
                .iter()
                .find(|(name, _)| *name == setting)
                .and_then(|(_, variable)| env(variable))
                .filter(|value| !value.is_empty())
        };
        let pick = |flag: &Option<String>, setting: &str, file: &Option<String>| {
            flag.clone()
                .or_else(|| variable(setting))
                .or_else(|| file.clone())
        };
        let resolved = Profile {
            url: pick(&flags.url, "url", &profile.url),
            client_id: pick(&flags.client_id, "client_id", &profile.client_id),
            key_file: flags
                .key_file
                .clone()
                .or_else(|| variable("key_file").map(PathBuf::from))
                .or(profile.key_file),
            key_id: pick(&flags.key_id, "key_id", &profile.key_id),
            ods_code: pick(&flags.ods_code, "ods_code", &profile.ods_code),
            subscriber_id: pick(
                &flags.subscriber_id,
                "subscriber_id",
                &profile.subscriber_id,
            ),
            queue_url: pick(&flags.queue_url, "queue_url", &profile.queue_url),
            emulator: pick(&flags.emulator, "emulator", &profile.emulator),
        };
        Ok(Settings {
            profile: resolved,
            path,
        })
    }

    /// A required setting, or the error saying the three ways to give it.
    pub fn require<'a>(
        &self,
        setting: &'static str,
        value: &'a Option<String>,
    ) -> Result<&'a str, ConfigError> {
        value.as_deref().ok_or_else(|| self.missing(setting))
    }

    pub fn missing(&self, setting: &'static str) -> ConfigError {
        ConfigError::Missing {
            setting,
            flag: setting.replace('_', "-"),
            variable: ENVIRONMENT
                .iter()
                .find(|(name, _)| *name == setting)
                .map_or("", |(_, variable)| variable),
            path: self.path.clone(),
        }
    }

    /// The key id: the profile's, else `<client_id>-1` (the local stack's
    /// demo clients' convention).
    pub fn key_id(&self, client_id: &str) -> String {
        self.profile
            .key_id
            .clone()
            .unwrap_or_else(|| format!("{client_id}-1"))
    }
}

/// A profile as TOML, under `[profiles.NAME]`.
pub fn profile_toml(name: &str, profile: &Profile) -> String {
    let mut text = format!("[profiles.{name}]\n");
    let mut line = |key: &str, value: Option<&str>| {
        if let Some(value) = value {
            // A TOML basic string: JSON's escaping is a subset of it.
            text.push_str(&format!("{key} = {}\n", serde_json::Value::from(value)));
        }
    };
    line("url", profile.url.as_deref());
    line("client_id", profile.client_id.as_deref());
    line(
        "key_file",
        profile.key_file.as_deref().and_then(Path::to_str),
    );
    line("key_id", profile.key_id.as_deref());
    line("ods_code", profile.ods_code.as_deref());
    line("subscriber_id", profile.subscriber_id.as_deref());
    line("queue_url", profile.queue_url.as_deref());
    line("emulator", profile.emulator.as_deref());
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_config(text: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("hub-cli-config-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_profile() {
        let local = Profile {
            url: Some("http://127.0.0.1:3000".into()),
            client_id: Some("demo-publisher".into()),
            key_file: Some("/k/demo-publisher.pem".into()),
            ..Profile::default()
        };
        let path = write_config(&format!(
            "{}\n{}",
            profile_toml("local", &local),
            profile_toml(
                "default",
                &Profile {
                    url: Some("https://hub.example".into()),
                    ..Profile::default()
                }
            )
        ));
        let config = path.to_string_lossy().into_owned();
        let env = |name: &str| match name {
            "HUB_CONFIG" => Some(config.clone()),
            "HUB_CLIENT_ID" => Some("from-env".into()),
            _ => None,
        };
        let flags = Profile {
            key_id: Some("k-9".into()),
            ..Profile::default()
        };
        let settings = Settings::resolve(&flags, Some("local"), &env).unwrap();
        assert_eq!(
            settings.profile.url.as_deref(),
            Some("http://127.0.0.1:3000")
        );
        assert_eq!(settings.profile.client_id.as_deref(), Some("from-env"));
        assert_eq!(
            settings.profile.key_file,
            Some("/k/demo-publisher.pem".into())
        );
        assert_eq!(settings.key_id("x"), "k-9");

        // Without --profile: HUB_PROFILE, else `default`.
        let settings = Settings::resolve(&Profile::default(), None, &env).unwrap();
        assert_eq!(settings.profile.url.as_deref(), Some("https://hub.example"));
        assert_eq!(settings.key_id("from-env"), "from-env-1");

        let error = Settings::resolve(&Profile::default(), Some("aws"), &env).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "no profile 'aws' in {} (it has: default, local)",
                path.display()
            )
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_missing_setting_names_its_flag_variable_and_file() {
        let env = |name: &str| (name == "HUB_CONFIG").then(|| "/nonexistent/c.toml".to_owned());
        let settings = Settings::resolve(&Profile::default(), None, &env).unwrap();
        assert_eq!(
            settings
                .require("url", &settings.profile.url)
                .unwrap_err()
                .to_string(),
            "no url: give --url, set HUB_URL, or set url in a profile of /nonexistent/c.toml"
        );
        assert!(matches!(
            Settings::resolve(&Profile::default(), Some("local"), &env),
            Err(ConfigError::NoFile { .. })
        ));
    }

    #[test]
    fn a_bad_file_is_refused_with_its_path() {
        let path = write_config("[profiles.local]\nurll = \"x\"\n");
        let config = path.to_string_lossy().into_owned();
        let env = |name: &str| (name == "HUB_CONFIG").then(|| config.clone());
        let error = Settings::resolve(&Profile::default(), None, &env).unwrap_err();
        assert!(
            error.to_string().contains("is not a valid config file"),
            "{error}"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn the_default_path_follows_xdg() {
        let env = |name: &str| (name == "HOME").then(|| "/home/me".to_owned());
        assert_eq!(
            config_path(&env),
            PathBuf::from("/home/me/.config/chhub/config.toml")
        );
    }
}
