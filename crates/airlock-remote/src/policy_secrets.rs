//! Policy values that can carry a secret, carried to the box like credentials (a secret file
//! each, see [`crate::layout::SECRETS_DIR`]), never in the spec: the spec is an environment
//! variable of the box (readable with `get pods`, `podman inspect`, a Fly machine's config)
//! and the `--dry-run` output.
//!
//! The kinds (airlock-policy's config.rs, every field that holds a value rather than a name):
//! - `[notify] webhook`: a Slack/ntfy-style URL is a bearer capability;
//! - `[telemetry.headers]` literal values: typically an API key (`x-honeycomb-team`,
//!   `DD-API-KEY`). Credential-valued headers already go through `[[credentials]]`.
//!
//! A new secret-bearing policy field must be added to [`split`] and [`restore`]; the test
//! below sets every string of these sections and checks none of them stays in the spec.

use airlock_policy::{HeaderValue, Policy};

use crate::{BoxSecret, RemoteError};

/// The prefix of these secrets' names; credentials may not use it.
pub const PREFIX: &str = "policy-";
/// The secret holding `[notify] webhook`.
pub const WEBHOOK: &str = "policy-notify-webhook";
/// The prefix of the secret holding the `N`th (in key order) literal `[telemetry.headers]` value.
const HEADER: &str = "policy-telemetry-header-";

/// Moves every secret-bearing value of `policy` into a secret (an empty placeholder stays in
/// its place); returns the secrets, whose names go into [`crate::BoxSpec::policy_secrets`].
pub fn split(policy: &mut Policy) -> Vec<BoxSecret> {
    let mut out = Vec::new();
    if let Some(w) = policy.notify.webhook.as_mut() {
        out.push(BoxSecret {
            name: WEBHOOK.to_string(),
            value: std::mem::take(w).into_bytes(),
        });
    }
    for (i, v) in policy.telemetry.headers.values_mut().enumerate() {
        if let HeaderValue::Literal(l) = v {
            out.push(BoxSecret {
                name: format!("{HEADER}{i}"),
                value: std::mem::take(l).into_bytes(),
            });
        }
    }
    out
}

/// Puts the values [`split`] took back into `policy` from `secrets` (name, value), for each of
/// `names`.
///
/// # Errors
/// A name with no secret, a name of no known kind or a header index past the policy's
/// headers, or a value that is not UTF-8: the box got secrets that do not match its spec.
pub fn restore(
    policy: &mut Policy,
    names: &[String],
    secrets: &[(String, Vec<u8>)],
) -> Result<(), RemoteError> {
    for name in names {
        let value = secrets
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| {
                RemoteError::Invalid(format!(
                    "the policy's secret {name} did not arrive under {}",
                    crate::layout::SECRETS_DIR
                ))
            })?;
        let value = String::from_utf8(value).map_err(|_| {
            RemoteError::Invalid(format!("the policy's secret {name} is not UTF-8"))
        })?;
        if name == WEBHOOK {
            policy.notify.webhook = Some(value);
        } else if let Some(i) = name
            .strip_prefix(HEADER)
            .and_then(|i| i.parse::<usize>().ok())
        {
            match policy.telemetry.headers.values_mut().nth(i) {
                Some(HeaderValue::Literal(l)) => *l = value,
                _ => {
                    return Err(RemoteError::Invalid(format!(
                        "the policy's secret {name} names no literal [telemetry.headers] value"
                    )))
                }
            }
        } else {
            return Err(RemoteError::Invalid(format!(
                "the policy's secret {name} is of no known kind"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marked() -> Policy {
        let mut p = Policy::from_layers(&[]).expect("policy");
        p.notify.webhook = Some("https://hooks.example/MARK-WEBHOOK".into());
        p.telemetry.otlp_endpoint = Some("https://otlp.example".into());
        p.telemetry
            .headers
            .insert("x-a".into(), HeaderValue::Literal("MARK-HEADER-A".into()));
        p.telemetry.headers.insert(
            "x-b".into(),
            HeaderValue::Credential {
                credential: "c".into(),
                value: Some("Bearer {}".into()),
            },
        );
        p.telemetry
            .headers
            .insert("x-c".into(), HeaderValue::Literal("MARK-HEADER-C".into()));
        p
    }

    #[test]
    fn no_secret_bearing_value_stays_in_the_policy_and_all_come_back() {
        let original = marked();
        let mut p = original.clone();
        let secrets = split(&mut p);
        let json = serde_json::to_string(&p).expect("json");
        assert!(!json.contains("MARK"), "{json}");
        assert_eq!(secrets.len(), 3);
        let names: Vec<String> = secrets.iter().map(|s| s.name.clone()).collect();
        assert!(names
            .iter()
            .all(|n| n.starts_with(PREFIX) && crate::valid_secret_name(n)));
        let files: Vec<(String, Vec<u8>)> =
            secrets.into_iter().map(|s| (s.name, s.value)).collect();
        restore(&mut p, &names, &files).expect("restore");
        assert_eq!(p, original);
        // A missing or unknown secret fails closed.
        let mut q = original.clone();
        split(&mut q);
        assert!(restore(&mut q, &names, &files[..1]).is_err());
        assert!(restore(&mut q, &["policy-other".into()], &files).is_err());
    }
}
