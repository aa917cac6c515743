//! Approval while the agent waits: a refused request is held while the approver asks, and goes
//! through only on an answer that allows it; no answer in time, a refusal, or a rule that cannot
//! be lifted refuses as before.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_audit::Decision;
use airlock_net::approval::{Answer, AnswerFuture, Approver};
use airlock_net::StaticResolver;
use common::*;

/// An approver the test answers: each question is recorded, and answered with the next answer
/// in `answers` (or never, when there is none).
#[derive(Debug, Default)]
struct Scripted {
    asked: Mutex<Vec<String>>,
    answers: Mutex<Vec<Answer>>,
}

impl Approver for Scripted {
    fn ask(&self, host: &str, port: u16, rule: &str) -> AnswerFuture {
        self.asked
            .lock()
            .expect("lock")
            .push(format!("{host}:{port} {rule}"));
        let next = self.answers.lock().expect("lock").pop();
        Box::pin(async move {
            match next {
                Some(a) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    a
                }
                None => std::future::pending().await,
            }
        })
    }
}

async fn env_with(answers: Vec<Answer>, timeout: Duration) -> (Env, Arc<Scripted>, Echo) {
    let echo = echo_upstream().await;
    let p = policy(
        r#"allow = ["listed.test"]
           deny = ["denied.test"]
           allow_private = ["127.0.0.1"]
           [resolve]
           "new.test" = "127.0.0.1"
           "denied.test" = "127.0.0.1"
           "inside.test" = "10.0.0.1"
           "listed.test" = "127.0.0.1"
           [ports]
           "listed.test" = [443]"#,
    );
    let approver = Arc::new(Scripted {
        asked: Mutex::new(Vec::new()),
        answers: Mutex::new(answers.into_iter().rev().collect()),
    });
    let a: Arc<dyn Approver> = approver.clone();
    let env = start_with(p, Arc::new(StaticResolver::new()), quick_limits(1), |c| {
        c.approver = Some(a);
        c.approval_timeout = timeout;
    });
    (env, approver, echo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_allows_the_held_request_and_asks_again_next_time() {
    let (env, approver, echo) =
        env_with(vec![Answer::Once, Answer::Refuse], Duration::from_secs(5)).await;
    let port = echo.addr.port();
    let (_s, resp) = connect(env.proxy, &format!("new.test:{port}")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let (_s, resp) = connect(env.proxy, &format!("new.test:{port}")).await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert_eq!(approver.asked.lock().expect("lock").len(), 2);
    env.wait_event(|e| {
        e.decision == Decision::Allow && e.rule.as_deref() == Some("approvals: once")
    })
    .await;
    assert!(env.events().iter().any(|e| e.decision == Decision::Ask));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_allows_this_host_and_port_from_then_on_without_asking() {
    let (env, approver, echo) = env_with(vec![Answer::Session], Duration::from_secs(5)).await;
    let port = echo.addr.port();
    for _ in 0..3 {
        let (_s, resp) = connect(env.proxy, &format!("new.test:{port}")).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    }
    assert_eq!(approver.asked.lock().expect("lock").len(), 1);
    // Another port of the same host is another question.
    let (env2, approver2, echo2) = env_with(
        vec![Answer::Session, Answer::Refuse],
        Duration::from_secs(5),
    )
    .await;
    let port2 = echo2.addr.port();
    let (_s, resp) = connect(env2.proxy, &format!("new.test:{port2}")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let (_s, resp) = connect(env2.proxy, "new.test:8443").await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert_eq!(approver2.asked.lock().expect("lock").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_in_time_or_a_no_refuses_as_before() {
    let (env, _approver, echo) = env_with(vec![], Duration::from_millis(400)).await;
    let port = echo.addr.port();
    let started = Instant::now();
    let (_s, resp) = connect(env.proxy, &format!("new.test:{port}")).await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert!(resp.contains("--allow-domain new.test"), "{resp}");
    let held = started.elapsed();
    assert!(
        held >= Duration::from_millis(350) && held < Duration::from_secs(5),
        "{held:?}"
    );
    let (env, _approver, echo) = env_with(vec![Answer::Refuse], Duration::from_secs(5)).await;
    let port = echo.addr.port();
    let (_s, resp) = connect(env.proxy, &format!("new.test:{port}")).await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
}

/// A deny entry, the private-range rule after an approval, and an IP-literal's address rule
/// are never lifted; the approver is not even asked for the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_an_approval_cannot_lift() {
    let answers = vec![Answer::Session; 4];
    let (env, approver, echo) = env_with(answers, Duration::from_secs(5)).await;
    let port = echo.addr.port();
    let (_s, resp) = connect(env.proxy, &format!("denied.test:{port}")).await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert!(approver.asked.lock().expect("lock").is_empty());
    // Approved by name, but it resolves to a private address not in allow_private.
    let (_s, resp) = connect(env.proxy, "inside.test:443").await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert!(
        header(&resp, "x-airlock-reason").is_some_and(|r| r.starts_with("network.allow_private")),
        "{resp}"
    );
}
