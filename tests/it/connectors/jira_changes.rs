//! Jira bugs from classified runs, against a fake Jira that keeps issues, statuses,
//! transitions, comments and links and answers as Jira does (a transition: 204 with no body;
//! an issue link: 201 with no body; an id the workflow does not offer: 400 with
//! `errorMessages`): bugs for NEW failures only, "passing again" when fixed, a regression on
//! a Done bug reopened or filed anew and linked.

use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use testrelay_domain::history::Class;
use testrelay_domain::report::model::{Status, TestRun};
use testrelay_tests::vendor::*;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

#[derive(Default)]
struct Fake {
    /// (key, fields, status category)
    issues: Vec<(String, Value, &'static str)>,
    comments: Vec<(String, String)>,
    links: Vec<Value>,
    transitions: Vec<(String, String)>,
    /// The workflow's Reopen has a screen with a required field: Jira answers 400.
    reopen_needs_a_field: bool,
}

async fn fake() -> (MockServer, Arc<Mutex<Fake>>) {
    let server = MockServer::start().await;
    let state: Arc<Mutex<Fake>> = Arc::default();
    let s = state.clone();
    Mock::given(wiremock::matchers::any())
        .respond_with(move |r: &Request| {
            let mut st = s.lock().unwrap();
            let p = r.url.path().to_string();
            let body = || r.body_json::<Value>().unwrap();
            if p == "/rest/api/2/issue" {
                let key = format!("SHOP-{}", 300 + st.issues.len());
                st.issues.push((key.clone(), body()["fields"].clone(), "new"));
                return ResponseTemplate::new(201).set_body_json(json!({"id": "1", "key": key}));
            }
            if p == "/rest/api/2/issueLink" {
                st.links.push(body());
                return ResponseTemplate::new(201);
            }
            if p == "/rest/api/3/search/jql" {
                let jql = r.url.query_pairs().find(|(k, _)| k == "jql").unwrap().1.to_string();
                let label = jql.split("labels = \"").nth(1).unwrap().trim_end_matches('"').to_string();
                let hits: Vec<Value> = st
                    .issues
                    .iter()
                    .filter(|i| i.1["labels"].as_array().unwrap().contains(&json!(label)))
                    .map(|i| json!({"key": i.0}))
                    .collect();
                return ResponseTemplate::new(200).set_body_json(json!({"issues": hits}));
            }
            let Some(rest) = p.strip_prefix("/rest/api/2/issue/") else {
                return ResponseTemplate::new(404);
            };
            let (issue, what) = rest.split_once('/').unwrap_or((rest, ""));
            let issue = issue.to_string();
            match (r.method.as_str(), what) {
                ("GET", "") => {
                    let category = st.issues.iter().find(|i| i.0 == issue).unwrap().2;
                    let name = if category == "done" { "Done" } else { "To Do" };
                    ResponseTemplate::new(200).set_body_json(json!({"key": issue, "fields": {
                        "status": {"name": name, "statusCategory": {"id": 3, "key": category, "name": name}}}}))
                }
                ("GET", "transitions") => ResponseTemplate::new(200).set_body_json(json!({"transitions": [
                    {"id": "31", "name": "Done", "to": {"name": "Done", "statusCategory": {"key": "done"}}},
                    {"id": "11", "name": "Reopen", "to": {"name": "To Do", "statusCategory": {"key": "new"}}},
                ]})),
                ("POST", "transitions") if st.reopen_needs_a_field => {
                    ResponseTemplate::new(400).set_body_json(json!({
                        "errorMessages": [],
                        "errors": {"customfield_10010": "Root cause is required."}}))
                }
                ("POST", "transitions") => {
                    let id = body()["transition"]["id"].as_str().unwrap().to_string();
                    if id != "11" && id != "31" {
                        return ResponseTemplate::new(400).set_body_json(json!({
                            "errorMessages": [format!("Transition id '{id}' is not valid for this issue.")],
                            "errors": {}}));
                    }
                    let i = st.issues.iter_mut().find(|i| i.0 == issue).unwrap();
                    i.2 = if id == "11" { "new" } else { "done" };
                    st.transitions.push((issue, id));
                    ResponseTemplate::new(204)
                }
                ("GET", "comment") => {
                    let listed: Vec<Value> = st.comments.iter().enumerate()
                        .filter(|(_, c)| c.0 == issue)
                        .map(|(i, c)| json!({"id": format!("{}", i + 1), "body": c.1}))
                        .collect();
                    ResponseTemplate::new(200).set_body_json(json!({"comments": listed}))
                }
                ("POST", "comment") => {
                    st.comments.push((issue, body()["body"].as_str().unwrap().to_string()));
                    ResponseTemplate::new(201).set_body_json(json!({"id": format!("{}", st.comments.len())}))
                }
                _ => ResponseTemplate::new(404),
            }
        })
        .mount(&server)
        .await;
    (server, state)
}

async fn jira(
    h: &Harness,
    server: &MockServer,
    bugs: &str,
) -> Arc<dyn testrelay_domain::ports::Connector> {
    h.secret("jira", "jira-api-token-0123");
    h.connector(
        "c",
        &format!(
            "kind = \"jira\"\nurl = \"{}\"\ndeployment = \"cloud\"\nemail = \"ci@example.com\"\ntoken = {{ secret = \"jira\" }}\nproject_key = \"SHOP\"\nallow_http = true\n[connectors.c.bugs]\n{bugs}",
            server.uri()
        ),
    )
    .await
}

/// The sample run (checkout NEW, refunds STILL FAILING) as run `n`, with checkout's class
/// and status set.
fn run(n: u8, checkout: Class) -> TestRun {
    let mut r = sample_run_with_changes();
    r.run_id = testrelay_domain::ids::RunId::derived(&[n]);
    let status = if checkout == Class::Fixed {
        Status::Passed
    } else {
        Status::Failed
    };
    for case in &mut r.report.suites[0].cases {
        if case.name.contains("checkout") {
            case.status = status;
        }
    }
    for t in &mut r.changes.as_mut().unwrap().tests {
        if t.name.contains("checkout") {
            (t.class, t.status) = (checkout, status);
        }
    }
    r
}

async fn deliver_ref(
    h: &Harness,
    c: &dyn testrelay_domain::ports::Connector,
    r: &TestRun,
) -> String {
    deliver(h, c, r, 0).await.unwrap().external_ref.unwrap()
}

#[tokio::test]
async fn new_failures_file_bugs_fixed_tests_say_so_and_a_done_bug_reopens() {
    let (server, state) = fake().await;
    let h = Harness::new();
    let c = jira(&h, &server, "").await;
    let d = deliver_ref(&h, c.as_ref(), &run(1, Class::New)).await;
    assert!(
        d.contains("bugs opened: SHOP-300; commented: 0"),
        "only the new failure: {d}"
    );
    {
        let st = state.lock().unwrap();
        assert_eq!(st.issues.len(), 1);
        assert!(
            st.issues[0].1["summary"]
                .as_str()
                .unwrap()
                .contains("checkout fails on 503")
        );
    }
    // Fixed: "passing again" on its bug.
    let d = deliver_ref(&h, c.as_ref(), &run(2, Class::Fixed)).await;
    assert!(d.contains("passing again: 1"), "{d}");
    {
        let mut st = state.lock().unwrap();
        assert_eq!(st.comments.len(), 1);
        assert_eq!(st.comments[0].0, "SHOP-300");
        assert!(
            st.comments[0]
                .1
                .starts_with("Passing again in web · main · a1b2c3d"),
            "{:?}",
            st.comments
        );
        // Someone closes the bug.
        st.issues[0].2 = "done";
    }
    // It fails again: a regression, the bug reopens by its "Reopen" transition.
    let d = deliver_ref(&h, c.as_ref(), &run(3, Class::New)).await;
    assert!(d.contains("reopened: SHOP-300"), "{d}");
    let st = state.lock().unwrap();
    assert_eq!(st.transitions, [("SHOP-300".to_string(), "11".to_string())]);
    assert_eq!(st.issues.len(), 1, "no new bug");
    assert!(st.comments[1].1.starts_with("Failed again in"));
}

#[tokio::test]
async fn a_regression_on_a_done_bug_can_file_a_new_linked_one() {
    let (server, state) = fake().await;
    let h = Harness::new();
    let c = jira(&h, &server, "on_regression = \"new_linked\"").await;
    deliver_ref(&h, c.as_ref(), &run(1, Class::New)).await;
    state.lock().unwrap().issues[0].2 = "done";
    let d = deliver_ref(&h, c.as_ref(), &run(2, Class::New)).await;
    assert!(d.contains("bugs opened: SHOP-301"), "{d}");
    {
        let mut st = state.lock().unwrap();
        assert_eq!(
            st.links,
            [
                json!({"type": {"name": "Relates"}, "inwardIssue": {"key": "SHOP-301"}, "outwardIssue": {"key": "SHOP-300"}})
            ]
        );
        st.issues[1].2 = "done";
    }
    // The chain is followed to its latest bug: the next regression follows SHOP-301.
    let d = deliver_ref(&h, c.as_ref(), &run(3, Class::New)).await;
    assert!(d.contains("bugs opened: SHOP-302"), "{d}");
    // Delivered again (a redrive): nothing new.
    let d = deliver_ref(&h, c.as_ref(), &run(3, Class::New)).await;
    let st = state.lock().unwrap();
    assert_eq!(st.issues.len(), 3, "{d}");
    assert_eq!(st.links[1]["outwardIssue"]["key"], "SHOP-301");
}

/// A workflow whose Reopen needs a field Jira refuses without (400 with `errors`): the bug
/// stays Done, gets the comment, and the delivery succeeds.
#[tokio::test]
async fn a_reopen_jira_refuses_still_comments() {
    let (server, state) = fake().await;
    let h = Harness::new();
    let c = jira(&h, &server, "").await;
    deliver_ref(&h, c.as_ref(), &run(1, Class::New)).await;
    {
        let mut st = state.lock().unwrap();
        st.issues[0].2 = "done";
        st.reopen_needs_a_field = true;
    }
    let mut regressed = run(2, Class::New);
    regressed.meta.pipeline = Some(testrelay_domain::report::model::PipelineRef {
        id: "gh-7".into(),
        shard: None,
        attempt: 1,
        completion: Some(1),
    });
    let d = deliver_ref(&h, c.as_ref(), &regressed).await;
    assert!(d.contains("commented: 1") && !d.contains("reopened"), "{d}");
    let st = state.lock().unwrap();
    assert_eq!(st.issues[0].2, "done");
    assert!(
        st.comments[0]
            .1
            .starts_with("Failed again in pipeline gh-7 (web · main · a1b2c3d)"),
        "{:?}",
        st.comments
    );
}

#[tokio::test]
async fn file_for_failures_keeps_a_bug_per_failure() {
    let (server, state) = fake().await;
    let h = Harness::new();
    let c = jira(&h, &server, "file_for = \"failures\"").await;
    let d = deliver_ref(&h, c.as_ref(), &run(1, Class::New)).await;
    assert!(d.contains("bugs opened: SHOP-300, SHOP-301"), "{d}");
    assert_eq!(state.lock().unwrap().issues.len(), 2);
}
