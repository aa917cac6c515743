//! Is the machine's image in the app's registry? For an image in `registry.fly.io`, a
//! `HEAD /v2/<repository>/manifests/<reference>` (the OCI distribution spec's "pull
//! manifests" check) with the Fly token as the password of user `x` (what `fly auth docker`
//! stores), following a `Bearer` challenge with the registry's token endpoint (the Docker
//! registry token authentication spec) when the registry answers with one.
//!
//! airlock does not build or push here: a build needs a container engine and a push the
//! registry, and neither is something this step should start behind the user's back. A
//! missing image is an error that gives the exact commands (`fly deploy --build-only --push`
//! or `docker build` + `docker push` after `fly auth docker`). Images of other registries are
//! not checked: the machine pulls them itself and a missing one fails the start, which
//! [`super::FlyEngine`] reports with the machine destroyed.

use base64::Engine as _;
use hyper::{Method, StatusCode};

use super::client::{Api, Call, Subject};
use super::{FLY, REGISTRY};
use crate::RemoteError;

/// The manifest types the check accepts (a HEAD answers 404 for types not listed).
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// `registry.fly.io/REPO[:TAG|@DIGEST]` split into (repository, reference); `None` for an
/// image of another registry.
pub fn fly_reference(image: &str) -> Option<(String, String)> {
    let rest = image.strip_prefix(REGISTRY)?.strip_prefix('/')?;
    if let Some((repo, digest)) = rest.split_once('@') {
        return Some((repo.to_string(), digest.to_string()));
    }
    let (repo, tag) = match rest.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (rest, "latest"),
    };
    Some((repo.to_string(), tag.to_string()))
}

/// Checks that `image` exists when it is in the app's registry (see the module doc).
///
/// # Errors
/// The image is missing (the commands that build and push it), the registry refused the token,
/// or it cannot be reached.
pub(crate) async fn check(api: &Api, registry_url: &str, image: &str) -> Result<(), RemoteError> {
    let Some((repo, reference)) = fly_reference(image) else {
        return Ok(());
    };
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:".contains(c))
    };
    if !valid(&repo) || !valid(&reference) {
        return Err(RemoteError::Invalid(format!(
            "fly: {image} is not an image reference"
        )));
    }
    let url = format!("{registry_url}/v2/{repo}/manifests/{reference}");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("x:{}", api.token.bare()))
    );
    let subject = Subject::Image(image.to_string());
    let mut a = head(api, &url, basic.clone(), &subject).await?;
    if a.status == StatusCode::UNAUTHORIZED {
        if let Some(challenge) = a
            .www_authenticate
            .as_deref()
            .and_then(bearer_challenge)
            .filter(|c| realm_trusted(&c.0, registry_url))
        {
            let token = registry_token(api, &challenge, &basic, &subject).await?;
            a = head(api, &url, format!("Bearer {token}"), &subject).await?;
        }
    }
    let app = &api.app;
    match a.status {
        s if s.is_success() => Ok(()),
        StatusCode::NOT_FOUND => Err(RemoteError::Resource {
            engine: FLY,
            resource: format!("image/{image}"),
            message: format!(
                "the image is not in the app's registry; build and push it first, with flyctl \
                 from the directory of its Dockerfile: `fly deploy --app {app} --build-only \
                 --push --image-label {reference}`, or with docker: `fly auth docker && docker \
                 build -t {image} . && docker push {image}`; or pass --image with an image \
                 that exists"
            ),
        }),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(RemoteError::Engine {
            engine: FLY,
            message: format!(
                "the registry {REGISTRY} refused the token from {} for {image} (HTTP {}); log in \
                 again with `fly auth login`",
                api.token.source(),
                a.status.as_u16()
            ),
        }),
        s => Err(RemoteError::Resource {
            engine: FLY,
            resource: format!("image/{image}"),
            message: format!(
                "the registry answered HTTP {} to the manifest check; a retry may help",
                s.as_u16()
            ),
        }),
    }
}

async fn head(
    api: &Api,
    url: &str,
    authorization: String,
    subject: &Subject,
) -> Result<super::client::Answer, RemoteError> {
    api.send(
        Call::new(Method::HEAD, url, subject)
            .authorization(authorization)
            .accept(ACCEPT),
    )
    .await
}

/// `Bearer realm="…",service="…",scope="…"` → (realm, service, scope).
fn bearer_challenge(h: &str) -> Option<(String, String, String)> {
    let rest = h.trim().strip_prefix("Bearer ")?;
    let mut realm = String::new();
    let mut service = String::new();
    let mut scope = String::new();
    for part in rest.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').to_string();
        match k.trim() {
            "realm" => realm = v,
            "service" => service = v,
            "scope" => scope = v,
            _ => {}
        }
    }
    (realm.starts_with("https://")).then_some((realm, service, scope))
}

/// The host of an `https://HOST[:PORT]/…` URL.
fn host_of(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split(['/', '?']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some(host.split(':').next().unwrap_or(host))
}

/// The token goes with the challenge only to the registry's own host or one of Fly's
/// (`*.fly.io`): a challenge cannot send it anywhere else.
fn realm_trusted(realm: &str, registry_url: &str) -> bool {
    match (host_of(realm), host_of(registry_url)) {
        (Some(r), Some(g)) => !r.is_empty() && (r == g || r.ends_with(".fly.io")),
        _ => false,
    }
}

async fn registry_token(
    api: &Api,
    (realm, service, scope): &(String, String, String),
    basic: &str,
    subject: &Subject,
) -> Result<String, RemoteError> {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    let url = format!("{realm}?service={}&scope={}", enc(service), enc(scope));
    let a = api
        .send(Call::new(Method::GET, url, subject).authorization(basic.to_string()))
        .await?;
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap_or_default();
    match v["token"].as_str().or_else(|| v["access_token"].as_str()) {
        Some(t) if a.status.is_success() => Ok(t.to_string()),
        _ => Err(RemoteError::Engine {
            engine: FLY,
            message: format!(
                "the registry's token endpoint refused the token from {} (HTTP {}); log in \
                 again with `fly auth login`",
                api.token.source(),
                a.status.as_u16()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(
            fly_reference("registry.fly.io/app:tag"),
            Some(("app".into(), "tag".into()))
        );
        assert_eq!(
            fly_reference("registry.fly.io/app"),
            Some(("app".into(), "latest".into()))
        );
        assert_eq!(
            fly_reference("registry.fly.io/app@sha256:ab"),
            Some(("app".into(), "sha256:ab".into()))
        );
        assert_eq!(fly_reference("docker.io/library/debian:12"), None);
        assert_eq!(fly_reference("registry.fly.io.evil/app:1"), None);
    }

    #[test]
    fn challenges() {
        assert_eq!(
            bearer_challenge(
                "Bearer realm=\"https://r.test/token\",service=\"r.test\",scope=\"repository:a:pull\""
            ),
            Some((
                "https://r.test/token".into(),
                "r.test".into(),
                "repository:a:pull".into()
            ))
        );
        // a realm that is not https would send the token in clear: ignored
        assert_eq!(bearer_challenge("Bearer realm=\"http://r.test/t\""), None);
        assert_eq!(bearer_challenge("Basic realm=\"x\""), None);
        // the token follows a challenge only to the registry or to Fly's own hosts
        let reg = "https://registry.fly.io";
        assert!(realm_trusted("https://registry.fly.io/token", reg));
        assert!(realm_trusted("https://auth.fly.io/token", reg));
        for bad in [
            "https://evil.example/token",
            "https://registry.fly.io.evil.example/t",
            "https://evil.example/registry.fly.io",
            "https://user@evil.example/t",
            "https://fly.io@evil.example/t",
            "http://registry.fly.io/token",
        ] {
            assert!(!realm_trusted(bad, reg), "{bad}");
        }
    }
}
