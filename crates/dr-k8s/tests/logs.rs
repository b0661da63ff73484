//! Logs of a workload's pods for the RCA: a window of time, a tail, a
//! named container.

use std::time::{Duration, SystemTime};

use dr_k8s::{LogQuery, PodQuery};
use jiff::Timestamp;
use serde_json::json;

use crate::common::{deployment, pods_until, stand_in};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_read_in_a_window_and_tailed() {
    let Some(setup) = stand_in("it writes the pods' logs through the stand-in").await else {
        return;
    };
    let ns = setup.namespace.as_str();
    let cluster = &setup.cluster;
    deployment(cluster, "sfu", 2, json!({})).await;
    let pods = pods_until(
        cluster,
        &PodQuery::in_namespace(ns).labels("app=sfu"),
        |pods| pods.len() == 2,
    )
    .await;
    let t0 = SystemTime::now() - Duration::from_secs(600);
    let at = |minute: u64| t0 + Duration::from_secs(minute * 60);
    for pod in &pods {
        for minute in 0..5 {
            setup
                .server()
                .append_log_at(
                    ns,
                    &pod.name,
                    "main",
                    at(minute),
                    &format!("{} line {minute}", pod.name),
                )
                .unwrap();
        }
    }
    let stamp = |t: SystemTime| Timestamp::try_from(t).unwrap();

    let all = cluster
        .logs(&LogQuery::labels(ns, "app=sfu"))
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|l| l.lines.len() == 5), "{all:?}");
    assert_eq!(all[0].lines[0].text, format!("{} line 0", all[0].pod));
    assert_eq!(all[0].lines[0].at, stamp(at(0)));

    // Minutes 1 to 3 of the incident, the last two lines of them.
    let window = LogQuery::labels(ns, "app=sfu").between(Some(stamp(at(1))), Some(stamp(at(4))));
    let lines: Vec<String> = cluster.logs(&window).await.unwrap()[0]
        .lines
        .iter()
        .map(|l| l.text.clone())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let tailed = cluster.logs(&window.tail(2)).await.unwrap();
    let texts: Vec<&str> = tailed[0].lines.iter().map(|l| l.text.as_str()).collect();
    assert!(
        texts[0].ends_with("line 2") && texts[1].ends_with("line 3"),
        "{texts:?}"
    );

    let one = cluster
        .logs(&LogQuery::pod(ns, &pods[1].name).container("main").tail(1))
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].lines.len(), 1);
    assert!(one[0].lines[0].text.ends_with("line 4"));

    let err = cluster
        .logs(&LogQuery::pod(ns, &pods[0].name).container("sidecar"))
        .await
        .unwrap_err();
    assert!(matches!(err, dr_k8s::Error::Api { code: 400, .. }), "{err}");
}
