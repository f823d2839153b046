//! How a command reaches a running node: the options every command takes
//! ([`Target`]: the API's URL, the admin token, the configuration file) and
//! a small blocking client of the HTTP API ([`Client`]). Shared by the CLI
//! and the load generator, which import this instead of each other.
//!
//! Owns: the client side of the API. Must not touch: any command's logic.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use serde_json::Value;

use crate::config::Config;
use crate::node::ADMIN_TOKEN_FILE;

/// Which node a command talks to, and with what configuration: the
/// options every command takes.
#[derive(Debug, Args)]
pub struct Target {
    /// The node's HTTP API.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:8080",
        env = "SWITCHBOARD_URL"
    )]
    pub url: String,
    /// The admin token (default: DATA/admin.token of the configured data directory).
    #[arg(
        long,
        global = true,
        env = "SWITCHBOARD_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// A configuration file (TOML) over the embedded default.
    #[arg(short = 'c', long = "config", value_name = "CONFIG", global = true)]
    pub config_file: Option<PathBuf>,
}

impl Target {
    /// The configuration: the embedded default, the file, the environment.
    ///
    /// # Errors
    /// An invalid configuration (naming the key).
    pub fn config(&self) -> anyhow::Result<Config> {
        Config::load(self.config_file.as_deref()).map_err(|e| anyhow!("configuration: {e}"))
    }

    /// The admin token: `--admin-token`, `SWITCHBOARD_ADMIN_TOKEN`, or the
    /// configured data directory's `admin.token`.
    ///
    /// # Errors
    /// When none of them gives one.
    pub fn admin_token(&self) -> anyhow::Result<String> {
        if let Some(t) = &self.admin_token {
            return Ok(t.clone());
        }
        let cfg = self.config()?;
        let path = cfg.data.dir.join(ADMIN_TOKEN_FILE);
        let t = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no --admin-token, no SWITCHBOARD_ADMIN_TOKEN, and cannot read {}",
                path.display()
            )
        })?;
        Ok(t.trim().to_string())
    }

    /// A client of the node's API with the admin token.
    ///
    /// # Errors
    /// As [`Target::admin_token`].
    pub fn admin(&self) -> anyhow::Result<Client> {
        Ok(Client::new(&self.url, &self.admin_token()?))
    }
}

/// A small blocking client of the node's HTTP API.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: String,
}

impl Client {
    /// A client of the API at `base` using `token`.
    pub fn new(base: &str, token: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Self {
            agent,
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
        }
    }

    fn finish(
        &self,
        what: &str,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Value> {
        let mut resp =
            resp.map_err(|e| anyhow!("{what}: cannot reach the node at {} ({e})", self.base))?;
        let status = resp.status();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(body);
        }
        let msg = body["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string());
        let code = body["error"]["code"].as_str().unwrap_or("error");
        bail!("{what}: {} {code}: {msg}", status.as_u16())
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// GET `path`.
    ///
    /// # Errors
    /// A transport failure or a non-2xx answer (with the API's message).
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", self.auth())
            .call();
        self.finish(&format!("GET {path}"), r)
    }

    /// POST `body` (JSON) to `path`.
    ///
    /// # Errors
    /// As [`Client::get`].
    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let r = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", self.auth())
            .send_json(body);
        self.finish(&format!("POST {path}"), r)
    }

    /// PUT `body` (JSON) to `path`, create-only when `create` (If-None-Match: *).
    ///
    /// # Errors
    /// As [`Client::get`].
    pub fn put(&self, path: &str, body: &Value, create: bool) -> anyhow::Result<Value> {
        let mut req = self
            .agent
            .put(format!("{}{path}", self.base))
            .header("Authorization", self.auth());
        if create {
            req = req.header("If-None-Match", "*");
        }
        self.finish(&format!("PUT {path}"), req.send_json(body))
    }

    /// DELETE `path`.
    ///
    /// # Errors
    /// As [`Client::get`].
    pub fn delete(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .agent
            .delete(format!("{}{path}", self.base))
            .header("Authorization", self.auth())
            .call();
        self.finish(&format!("DELETE {path}"), r)
    }
}
