//! The server's settings: one plain struct with defaults and a validation
//! whose errors name the setting and the value.

use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

/// What [`ServeConfig::validate`] rejects: the setting (its `name`, as the
/// `serve` example's flag spells it), its value and why; the workspace's
/// one shape of a rejected value.
pub type ConfigError = ca_core::InvalidValue;

/// Settings of the server. The server listens on [`ServeConfig::bind`]
/// (127.0.0.1 unless set otherwise).
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// The address to listen on: 127.0.0.1 (this machine only) by default;
    /// `0.0.0.0` serves every network the machine is on.
    pub bind: IpAddr,
    /// TCP port; 0 lets the system choose a free one.
    pub port: u16,
    /// The models folder: the only place models are read from. A model is
    /// chosen by the stem of a `*.safetensors` file listed in it.
    pub models_dir: PathBuf,
    /// The model a page or an API call gets when it names none.
    pub default_model: String,
    /// Largest accepted upload (the image bytes of `POST /api/segment`, one
    /// WebSocket image message); larger ones get 413.
    pub max_upload_bytes: usize,
    /// Largest accepted image in pixels (width times height); larger ones
    /// get 413 before they are decoded.
    pub max_pixels: u64,
    /// Live pages (WebSocket colonies) at once; further pages get 503. API
    /// calls have their own pool ([`ServeConfig::max_api_colonies`]).
    pub max_colonies: usize,
    /// `POST /api/segment` calls segmenting at once; further calls wait in
    /// a queue.
    pub max_api_colonies: usize,
    /// API calls that may wait for a slot; one more gets 503 with
    /// `Retry-After` at once.
    pub api_queue: usize,
    /// Longest wait in the queue before a 503 with `Retry-After`.
    pub api_wait: Duration,
    /// A page that sends no photo (or video frame) this long after it
    /// connects is closed with the reason, and its slot freed.
    pub photo_timeout: Duration,
    /// A page that sends no message (command, photo or frame) this long is
    /// closed with the reason, and its slot freed.
    pub idle_timeout: Duration,
    /// Most CA steps a page or an API call may ask for.
    pub max_steps: usize,
    /// CA steps of `POST /api/segment` when the request names none.
    pub default_steps: usize,
    /// Most frames per second pushed to a page.
    pub max_fps: u32,
    /// Side in pixels of each view sent to the page (the colony's grid is
    /// enlarged to it by nearest neighbour).
    pub view_size: u32,
    /// Stochastic runs of the uncertainty view (batch of the colony while
    /// the view is on).
    pub uncertainty_runs: usize,
    /// Longest time a client may take to send a request's headers, and
    /// longest an idle keep-alive connection waits for its next request;
    /// then the connection is closed (hyper's header read timeout, which
    /// runs from the moment the connection waits for a request).
    pub header_timeout: Duration,
    /// Open connections at once (pages, sockets, API calls, idle
    /// keep-alive ones); one more is answered 503 with `Retry-After` and
    /// closed at once.
    pub max_connections: usize,
    /// Longest a WebSocket frame or notice may wait to be taken by the
    /// page (its TCP window full: a page that stopped reading); then the
    /// socket is closed and its colony slot freed.
    pub send_timeout: Duration,
    /// Origins (`scheme://host[:port]`, as a browser sends them) allowed
    /// to open `/ws` and call `/api/...` besides the server's own; a
    /// request with another `Origin` gets 403. Requests without an
    /// `Origin` (curl, scripts) are not browsers' cross-site requests and
    /// pass.
    pub allow_origins: Vec<String>,
    /// Most cells of a `format=json&size=native` map (its labels are a
    /// JSON number each, about 2 bytes a cell); larger photos get 413 and
    /// the advice to ask for the PNG, one byte a cell before compression.
    pub max_json_cells: u64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8080,
            models_dir: PathBuf::from("models"),
            default_model: "pets48".into(),
            max_upload_bytes: 8 << 20,
            max_pixels: 4096 * 4096,
            max_colonies: 4,
            max_api_colonies: 2,
            api_queue: 64,
            api_wait: Duration::from_secs(30),
            photo_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(900),
            max_steps: 5000,
            default_steps: ca_core::DEFAULT_STEPS,
            max_fps: 15,
            view_size: 192,
            uncertainty_runs: 4,
            header_timeout: Duration::from_secs(10),
            max_connections: 512,
            send_timeout: Duration::from_secs(10),
            allow_origins: Vec::new(),
            max_json_cells: 1 << 20,
        }
    }
}

impl ServeConfig {
    /// Checks every setting; the first bad one is the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let error =
            |setting, value: String, reason: String| Err(ConfigError::new(setting, value, reason));
        if self.models_dir.as_os_str().is_empty() {
            return error("models_dir", "''".into(), "must name a folder".into());
        }
        if crate::models::check_model_name(&self.default_model).is_err() {
            return error(
                "default_model",
                format!("'{}'", self.default_model),
                "must be a model name: letters, digits, '-', '_' and inner '.', no path".into(),
            );
        }
        for origin in &self.allow_origins {
            if let Err(reason) = check_origin(origin) {
                return error(
                    "allow_origins",
                    format!("'{}'", origin.escape_default()),
                    reason,
                );
            }
        }
        for (setting, value, range, reason) in self.numeric_ranges() {
            if !range.contains(&value) {
                return error(setting, value.to_string(), reason);
            }
        }
        for (setting, value) in [
            ("api_wait", self.api_wait),
            ("photo_timeout", self.photo_timeout),
            ("idle_timeout", self.idle_timeout),
            ("header_timeout", self.header_timeout),
            ("send_timeout", self.send_timeout),
        ] {
            if value.is_zero() || value > Duration::from_secs(86_400) {
                return error(
                    setting,
                    format!("{value:?}"),
                    "must be over 0 and at most a day".into(),
                );
            }
        }
        Ok(())
    }

    /// Every whole-number setting with the range it must lie in and the
    /// reason given when it does not, in the order they are checked.
    fn numeric_ranges(&self) -> [(&'static str, u64, RangeInclusive<u64>, String); 12] {
        let n = |v: usize| v as u64;
        [
            (
                "max_upload_bytes",
                n(self.max_upload_bytes),
                64..=256 << 20,
                "must be 64 bytes to 256 MiB".into(),
            ),
            (
                "max_pixels",
                self.max_pixels,
                1..=1 << 28,
                "must be 1 to 2^28".into(),
            ),
            (
                "max_colonies",
                n(self.max_colonies),
                1..=256,
                "must be 1 to 256".into(),
            ),
            (
                "max_api_colonies",
                n(self.max_api_colonies),
                1..=256,
                "must be 1 to 256".into(),
            ),
            (
                "api_queue",
                n(self.api_queue),
                0..=100_000,
                "must be 0 to 100000".into(),
            ),
            (
                "max_steps",
                n(self.max_steps),
                1..=1_000_000,
                "must be 1 to 1000000".into(),
            ),
            (
                "default_steps",
                n(self.default_steps),
                1..=n(self.max_steps),
                format!("must be 1 to max_steps ({})", self.max_steps),
            ),
            (
                "max_fps",
                u64::from(self.max_fps),
                1..=60,
                "must be 1 to 60".into(),
            ),
            (
                "view_size",
                u64::from(self.view_size),
                16..=1024,
                "must be 16 to 1024 pixels".into(),
            ),
            (
                "uncertainty_runs",
                n(self.uncertainty_runs),
                2..=16,
                "a variance needs 2 to 16 runs".into(),
            ),
            (
                "max_connections",
                n(self.max_connections),
                1..=100_000,
                "must be 1 to 100000".into(),
            ),
            (
                "max_json_cells",
                self.max_json_cells,
                1..=1 << 28,
                "must be 1 to 2^28".into(),
            ),
        ]
    }
}

/// Checks that `origin` is an origin as browsers send it: `http` or
/// `https`, `://`, a host and maybe a port, nothing after.
fn check_origin(origin: &str) -> Result<(), String> {
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ', '@']) {
        return Err("must be scheme://host[:port], with no path".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid() {
        assert_eq!(ServeConfig::default().validate(), Ok(()));
    }

    #[test]
    fn errors_name_the_setting_and_value() {
        let bad = [
            ServeConfig {
                max_colonies: 0,
                ..ServeConfig::default()
            },
            ServeConfig {
                default_model: "../etc/passwd".into(),
                ..ServeConfig::default()
            },
            ServeConfig {
                default_steps: 6000,
                ..ServeConfig::default()
            },
            ServeConfig {
                uncertainty_runs: 1,
                ..ServeConfig::default()
            },
            ServeConfig {
                allow_origins: vec!["https://example.org/app".into()],
                ..ServeConfig::default()
            },
            ServeConfig {
                header_timeout: Duration::ZERO,
                ..ServeConfig::default()
            },
        ];
        let expected = [
            "max_colonies = 0:",
            "default_model = '../etc/passwd':",
            "default_steps = 6000: must be 1 to max_steps (5000)",
            "uncertainty_runs = 1:",
            "allow_origins = 'https://example.org/app': must be scheme://host[:port]",
            "header_timeout = 0ns:",
        ];
        for (config, want) in bad.iter().zip(expected) {
            let msg = config.validate().unwrap_err().to_string();
            assert!(msg.starts_with(want), "{msg}");
        }
    }
}
