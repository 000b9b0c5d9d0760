//! `ControlPlane::from_env` takes the URL, agent and token from `ZT_CONTROL_PLANE_URL`,
//! `ZT_ACTOR` and `ZT_TOKEN`. One test in its own binary: it changes the process environment.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use support::{answer_to, fake_server, Reply};
use zt_client::{ControlPlane, Guarded};
use zt_contract::Decision;

#[tokio::test]
async fn the_environment_supplies_url_agent_and_token() {
    let (url, seen) = fake_server(|seen| {
        Reply::Answer(
            200,
            answer_to(
                "env-agent",
                "hello-world.say_hello",
                Decision::Allow,
                seen.request_id(),
                None,
            )
            .to_string(),
        )
    })
    .await;
    std::env::set_var("ZT_CONTROL_PLANE_URL", &url);
    std::env::set_var("ZT_ACTOR", "env-agent");
    std::env::set_var("ZT_TOKEN", "env-token");
    let plane = ControlPlane::from_env().unwrap();
    assert_eq!(plane.actor(), Some("env-agent"));
    let request = plane.request("hello-world.say_hello", "r");
    let outcome = plane.guarded(&request, |_allowed| async { "ran" }).await;
    assert!(matches!(outcome, Guarded::Executed { result: "ran", .. }));
    let sent = seen.lock().unwrap()[0].clone();
    assert_eq!(sent.body["actor"], "env-agent");
    assert!(
        sent.head
            .to_ascii_lowercase()
            .contains("authorization: bearer env-token"),
        "{}",
        sent.head
    );
    assert_eq!(sent.request_id().map(|id| id.len()), Some(32));

    // An empty variable counts as unset.
    std::env::set_var("ZT_TOKEN", "");
    std::env::set_var("ZT_CONTROL_PLANE_URL", "");
    let plane = zt_client::ControlPlaneBuilder::from_env().build().unwrap();
    assert_eq!(plane.actor(), Some("env-agent"));
    assert_eq!(zt_client::DEFAULT_URL, "http://127.0.0.1:3000");
    // An explicit setting wins over the environment.
    let plane = zt_client::ControlPlaneBuilder::from_env()
        .actor("explicit")
        .url(&url)
        .build()
        .unwrap();
    assert_eq!(plane.request("a", "").actor, "explicit");
}
