//! The Machines API client: one HTTPS exchange per call through [`airlock_net::outbound`]
//! (hyper, rustls on ring), the token in `Authorization`, every answer checked, and the
//! API's errors turned into [`RemoteError`]s that name the app or machine and the fix.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, Request, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::api::{self, ErrorBody};
use super::token::Token;
use super::FLY;
use crate::RemoteError;

/// Largest answer airlock reads (an exec's output, base64, is the largest).
const MAX_ANSWER: usize = 256 << 20;

/// What a call is about, for its errors.
#[derive(Debug, Clone)]
pub(crate) enum Subject {
    /// The app (`app/NAME`): a 404 means the app does not exist.
    App,
    /// A machine of the app (`machine/ID`).
    Machine(String),
    /// An app secret (`secret/NAME`).
    Secret(String),
    /// The app's logs.
    Logs,
    /// The registry (`image/REF`).
    Image(String),
}

/// The client of one app.
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) app: String,
    pub(crate) machines_url: String,
    pub(crate) logs_url: String,
    pub(crate) token: Token,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    /// Bound of one call that does not say its own.
    pub(crate) timeout: Duration,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("app", &self.app)
            .field("machines_url", &self.machines_url)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// One request for [`Api::send`]: the method, the URL and what the call is about, and by
/// default no `Authorization`, no body, [`Api`]'s timeout and `Accept: application/json`.
pub(crate) struct Call<'s> {
    method: Method,
    url: String,
    authorization: Option<String>,
    body: Option<Vec<u8>>,
    timeout: Option<Duration>,
    subject: &'s Subject,
    accept: &'static str,
    max_answer: usize,
}

impl<'s> Call<'s> {
    /// `method` on `url` (absolute), about `subject` (for errors).
    pub(crate) fn new(method: Method, url: impl Into<String>, subject: &'s Subject) -> Self {
        Call {
            method,
            url: url.into(),
            authorization: None,
            body: None,
            timeout: None,
            subject,
            accept: "application/json",
            max_answer: MAX_ANSWER,
        }
    }

    /// The `Authorization` header's value (`Bearer …`, `Basic …`, `FlyV1 …`).
    pub(crate) fn authorization(mut self, value: String) -> Self {
        self.authorization = Some(value);
        self
    }

    /// A JSON body (sent with `Content-Type: application/json`).
    pub(crate) fn json_body(mut self, body: Vec<u8>) -> Self {
        self.body = Some(body);
        self
    }

    /// The bound of the whole exchange, instead of [`Api`]'s.
    pub(crate) fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The largest answer read (bytes of its body), instead of the client's hard cap: a
    /// larger one is an error naming the bound and is not read further.
    pub(crate) fn max_answer(mut self, bytes: usize) -> Self {
        self.max_answer = bytes.min(MAX_ANSWER);
        self
    }

    /// The `Accept` header (a registry's manifest media types).
    pub(crate) fn accept(mut self, accept: &'static str) -> Self {
        self.accept = accept;
        self
    }
}

/// An answer: status and body.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
    pub(crate) www_authenticate: Option<String>,
}

impl Api {
    fn resource(&self, s: &Subject) -> String {
        match s {
            Subject::App | Subject::Logs => format!("app/{}", self.app),
            Subject::Machine(id) => format!("machine/{id}"),
            Subject::Secret(n) => format!("app/{}/secret/{n}", self.app),
            Subject::Image(r) => format!("image/{r}"),
        }
    }

    /// A request to the Machines API at `path` (under the base URL, e.g. `/v1/apps/x`) with
    /// the token; the other settings are [`Call`]'s defaults.
    pub(crate) fn machines<'s>(
        &self,
        method: Method,
        path: &str,
        subject: &'s Subject,
    ) -> Call<'s> {
        Call::new(method, format!("{}{path}", self.machines_url), subject)
            .authorization(self.token.authorization())
    }

    /// The one request path: sends `call` and returns whatever came back (transport errors
    /// and timeouts are errors naming the method, the URL without its query, and whether a
    /// retry helps; HTTP statuses are not errors here).
    pub(crate) async fn send(&self, call: Call<'_>) -> Result<Answer, RemoteError> {
        let Call {
            method,
            url,
            authorization,
            body,
            timeout,
            subject,
            accept,
            max_answer,
        } = call;
        let timeout = timeout.unwrap_or(self.timeout);
        let mut b = Request::builder()
            .method(method.clone())
            .uri(&url)
            .header("user-agent", concat!("airlock/", env!("CARGO_PKG_VERSION")))
            .header("accept", accept);
        if let Some(a) = authorization {
            b = b.header("authorization", a);
        }
        if body.is_some() {
            b = b.header("content-type", "application/json");
        }
        let req = b
            .body(Bytes::from(body.unwrap_or_default()))
            .map_err(|e| RemoteError::Invalid(format!("fly: bad request URL {url}: {e}")))?;
        let answer = tokio::time::timeout(
            timeout,
            airlock_net::outbound::send(&self.tls, req, max_answer),
        )
        .await
        .map_err(|_| RemoteError::Resource {
            engine: FLY,
            resource: self.resource(subject),
            message: format!(
                "{method} {} got no answer within {} s; retry, or check the network \
                 (`fly doctor`)",
                strip_query(&url),
                timeout.as_secs()
            ),
        })?
        .map_err(
            |e| match e.downcast_ref::<http_body_util::LengthLimitError>() {
                Some(_) => RemoteError::Resource {
                    engine: FLY,
                    resource: self.resource(subject),
                    message: format!(
                        "the answer to {method} {} is over {max_answer} bytes; airlock stopped \
                     reading it there",
                        strip_query(&url)
                    ),
                },
                None => RemoteError::Engine {
                    engine: FLY,
                    message: format!(
                "{method} {}: {e}; Fly's API cannot be reached from here (a retry may help; \
                 check the network and [fly] api_url)",
                strip_query(&url)
            ),
                },
            },
        )?;
        let www_authenticate = answer
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let status = answer.status();
        Ok(Answer {
            status,
            body: answer.into_body(),
            www_authenticate,
        })
    }

    /// A call to the Machines API (`path` under the base URL, e.g. `/v1/apps/x`); non-2xx
    /// answers become errors ([`Api::error`]).
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
        timeout: Option<Duration>,
        subject: &Subject,
    ) -> Result<Answer, RemoteError> {
        self.call_allowing(method, path, body, timeout, subject, &[])
            .await
    }

    /// [`Api::call`], with the statuses in `allowed` returned as answers, not errors (a 404 on
    /// a delete: it is gone already).
    pub(crate) async fn call_allowing(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
        timeout: Option<Duration>,
        subject: &Subject,
        allowed: &[StatusCode],
    ) -> Result<Answer, RemoteError> {
        let body = match body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| {
                RemoteError::Invalid(format!("fly: cannot serialise the request: {e}"))
            })?),
            None => None,
        };
        let mut call = self.machines(method.clone(), path, subject);
        if let Some(b) = body {
            call = call.json_body(b);
        }
        if let Some(t) = timeout {
            call = call.timeout(t);
        }
        let a = self.send(call).await?;
        if a.status.is_success() || allowed.contains(&a.status) {
            Ok(a)
        } else {
            Err(self.error(&method, path, &a, subject))
        }
    }

    /// Like [`Api::call`], the answer's JSON parsed.
    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
        timeout: Option<Duration>,
        subject: &Subject,
    ) -> Result<T, RemoteError> {
        let a = self
            .call(method.clone(), path, body, timeout, subject)
            .await?;
        serde_json::from_slice(&a.body).map_err(|e| RemoteError::Resource {
            engine: FLY,
            resource: self.resource(subject),
            message: format!("{method} {path}: the answer is not the documented JSON: {e}"),
        })
    }

    /// The error for a non-2xx answer: the API's own message, and what to do.
    pub(crate) fn error(
        &self,
        method: &Method,
        path: &str,
        a: &Answer,
        subject: &Subject,
    ) -> RemoteError {
        let said = serde_json::from_slice::<ErrorBody>(&a.body)
            .ok()
            .map(|b| b.error)
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| String::from_utf8_lossy(&a.body).chars().take(200).collect());
        let code = a.status.as_u16();
        let app = &self.app;
        match (a.status, subject) {
            (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _) => RemoteError::Engine {
                engine: FLY,
                message: format!(
                    "the API refused the token from {} (HTTP {code}: {said}): it is expired, \
                     revoked or has no rights on app {app}; log in again with `fly auth \
                     login`, or set FLY_API_TOKEN to a token from `fly tokens create deploy \
                     --app {app}`",
                    self.token.source()
                ),
            },
            (StatusCode::NOT_FOUND, Subject::App | Subject::Secret(_) | Subject::Logs) => {
                RemoteError::Resource {
                    engine: FLY,
                    resource: format!("app/{app}"),
                    message: format!(
                        "the app does not exist or this token cannot see it (HTTP 404: \
                         {said}); create it with `fly apps create {app}`, or name another \
                         with --fly-app or [fly] app"
                    ),
                }
            }
            _ => RemoteError::Resource {
                engine: FLY,
                resource: self.resource(subject),
                message: format!(
                    "{method} {path} failed (HTTP {code}: {said}){}",
                    if a.status.is_server_error() || a.status == StatusCode::TOO_MANY_REQUESTS {
                        "; the API's own failure: a retry may help"
                    } else {
                        ""
                    }
                ),
            },
        }
    }

    /// `GET /v1/apps/{app}`: the app exists and the token may see it.
    pub(crate) async fn check_app(&self) -> Result<(), RemoteError> {
        let path = format!("/v1/apps/{}", self.app);
        self.call(Method::GET, &path, None::<&()>, None, &Subject::App)
            .await
            .map(|_| ())
    }

    /// `POST /v1/apps/{app}/secrets/{name}` with the value; returns the secrets' version.
    pub(crate) async fn set_secret(&self, name: &str, value: String) -> Result<u64, RemoteError> {
        let path = format!("/v1/apps/{}/secrets/{name}", self.app);
        let r: api::SetSecretResponse = self
            .json(
                Method::POST,
                &path,
                Some(&api::SetSecretRequest { value }),
                None,
                &Subject::Secret(name.into()),
            )
            .await?;
        Ok(r.version)
    }

    /// `DELETE /v1/apps/{app}/secrets/{name}`; one already gone is not an error.
    pub(crate) async fn delete_secret(&self, name: &str) -> Result<(), RemoteError> {
        let path = format!("/v1/apps/{}/secrets/{name}", self.app);
        let subject = Subject::Secret(name.into());
        match self
            .call(Method::DELETE, &path, None::<&()>, None, &subject)
            .await
        {
            Err(RemoteError::Resource { message, .. }) if message.contains("HTTP 404") => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// `GET /v1/apps/{app}/machines/{id}`; `None` when it does not exist (any more).
    pub(crate) async fn machine(&self, id: &str) -> Result<Option<api::Machine>, RemoteError> {
        let path = format!("/v1/apps/{}/machines/{id}", self.app);
        let subject = Subject::Machine(id.into());
        let a = self
            .send(self.machines(Method::GET, &path, &subject))
            .await?;
        if a.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !a.status.is_success() {
            return Err(self.error(&Method::GET, &path, &a, &subject));
        }
        serde_json::from_slice(&a.body)
            .map(Some)
            .map_err(|e| RemoteError::Resource {
                engine: FLY,
                resource: format!("machine/{id}"),
                message: format!("GET {path}: the answer is not the documented JSON: {e}"),
            })
    }

    /// `GET /v1/apps/{app}/machines`: every machine of the app (any state).
    pub(crate) async fn list_machines(&self) -> Result<Vec<api::Machine>, RemoteError> {
        let path = format!("/v1/apps/{}/machines", self.app);
        let subject = Subject::App;
        let a = self
            .send(self.machines(Method::GET, &path, &subject))
            .await?;
        if !a.status.is_success() {
            return Err(self.error(&Method::GET, &path, &a, &subject));
        }
        serde_json::from_slice(&a.body).map_err(|e| RemoteError::Resource {
            engine: FLY,
            resource: format!("app/{}", self.app),
            message: format!("GET {path}: the answer is not the documented JSON: {e}"),
        })
    }

    /// `GET …/wait?state=STATE&timeout=SECS`: `true` when the machine reached the state,
    /// `false` on the API's 408 (not within `secs`).
    pub(crate) async fn wait(&self, id: &str, state: &str, secs: u64) -> Result<bool, RemoteError> {
        let path = format!(
            "/v1/apps/{}/machines/{id}/wait?state={state}&timeout={secs}",
            self.app
        );
        let subject = Subject::Machine(id.into());
        let a = self
            .send(
                self.machines(Method::GET, &path, &subject)
                    .timeout(Duration::from_secs(secs + 15)),
            )
            .await?;
        match a.status {
            s if s.is_success() => Ok(true),
            StatusCode::REQUEST_TIMEOUT => Ok(false),
            _ => Err(self.error(&Method::GET, &path, &a, &subject)),
        }
    }
}

/// `url` without its query (errors never show one).
fn strip_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}
