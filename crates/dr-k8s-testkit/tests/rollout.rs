//! The controllers, driven by kubectl: `get -w`, `rollout status`, `set image`, `rollout
//! restart`, `rollout undo`, `rollout history`; stateful sets scaled down; pods that fail.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::{Kubectl, post};

fn items(list: &Value) -> &Vec<Value> {
    list["items"].as_array().expect("a list")
}

fn names(list: &Value) -> Vec<&str> {
    items(list)
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect()
}

fn annotation<'a>(object: &'a Value, key: &str) -> &'a str {
    object["metadata"]["annotations"][key]
        .as_str()
        .unwrap_or("")
}

const REVISION: &str = "deployment.kubernetes.io/revision";

#[tokio::test]
async fn get_pods_watch_sees_a_pod_appear() {
    let Some(k) = Kubectl::start("get_pods_watch_sees_a_pod_appear").await else {
        return;
    };
    let mut child = k
        .command(&["get", "pods", "-w", "-v=6"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // kubectl lists first, then watches from the list's resourceVersion: a pod made any time
    // after the start shows up either way. Give it a moment to get to the watch.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "late"},
                     "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    let created = post(&k.server, "/api/v1/namespaces/default/pods", &pod).await;
    assert_eq!(created.code, 201, "{}", created.body);
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        let mut seen = Vec::new();
        while let Some(line) = lines.next_line().await.expect("read kubectl's output") {
            // Without Table responses kubectl prints its fallback columns, NAME and AGE.
            let late = line.starts_with("late");
            seen.push(line);
            if late {
                break;
            }
        }
        seen
    })
    .await;
    let Ok(seen) = seen else {
        child.kill().await.ok();
        let mut err = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut err)
            .await
            .ok();
        panic!("kubectl get -w printed no pod within 10 s: {err}");
    };
    child.kill().await.expect("kill kubectl");
    assert!(seen.iter().any(|l| l.starts_with("late")), "{seen:?}");
    let mut log = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut log)
        .await
        .expect("read kubectl's log");
    assert!(
        log.contains("/api/v1/namespaces/default/pods?resourceVersion=")
            && log.contains("watch=true"),
        "kubectl watched from the list's resourceVersion:\n{log}"
    );
}

#[tokio::test]
async fn a_deployment_rolls_out_restarts_and_undoes() {
    let Some(k) = Kubectl::start("a_deployment_rolls_out_restarts_and_undoes").await else {
        return;
    };
    k.apply_manifest().await;
    let ns = ["-n", "shop"];
    let with_ns =
        |args: &[&'static str]| -> Vec<&'static str> { ns.iter().chain(args).copied().collect() };

    // Revision 1: one replica set, owned by the deployment, with ready pods.
    let replica_sets = k
        .get_until(&with_ns(&["get", "rs"]), |l| {
            items(l).len() == 1 && l["items"][0]["status"]["readyReplicas"] == 2
        })
        .await;
    let deployment = k
        .run(&with_ns(&["get", "deploy", "web", "-o", "json"]))
        .await
        .json();
    let rs = &replica_sets["items"][0];
    let hash = rs["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap();
    assert_eq!(rs["metadata"]["name"], format!("web-{hash}"));
    assert_eq!(annotation(rs, REVISION), "1");
    let owner = &rs["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Deployment");
    assert_eq!(owner["controller"], true);
    assert_eq!(owner["uid"], deployment["metadata"]["uid"]);
    assert_eq!(
        rs["spec"]["selector"]["matchLabels"]["pod-template-hash"],
        hash
    );
    let pods = k.run(&with_ns(&["get", "pods", "-o", "json"])).await.json();
    assert_eq!(items(&pods).len(), 2);
    for pod in items(&pods) {
        assert!(
            pod["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with(&format!("web-{hash}-"))
        );
        assert_eq!(pod["status"]["phase"], "Running");
        assert_eq!(
            pod["metadata"]["ownerReferences"][0]["name"],
            rs["metadata"]["name"]
        );
    }

    let status = k
        .run(&with_ns(&[
            "rollout",
            "status",
            "deployment/web",
            "--timeout=10s",
        ]))
        .await;
    assert!(
        status.out().contains("successfully rolled out"),
        "{}",
        status.stdout
    );
    let deployment = k
        .run(&with_ns(&["get", "deploy", "web", "-o", "json"]))
        .await
        .json();
    assert_eq!(annotation(&deployment, REVISION), "1");
    assert_eq!(
        deployment["status"]["observedGeneration"],
        deployment["metadata"]["generation"]
    );
    assert_eq!(deployment["status"]["updatedReplicas"], 2);
    assert_eq!(deployment["status"]["availableReplicas"], 2);
    let progressing = deployment["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Progressing")
        .unwrap();
    assert_eq!(progressing["reason"], "NewReplicaSetAvailable");

    // Revision 2: a new image, a new replica set; the old one scaled to 0.
    k.run(&with_ns(&[
        "set",
        "image",
        "deployment/web",
        "web=nginx:1.28",
    ]))
    .await
    .out();
    let status = k
        .run(&with_ns(&[
            "rollout",
            "status",
            "deployment/web",
            "--timeout=10s",
        ]))
        .await;
    assert!(
        status.out().contains("successfully rolled out"),
        "{}",
        status.stdout
    );
    let replica_sets = k
        .get_until(&with_ns(&["get", "rs"]), |l| items(l).len() == 2)
        .await;
    let by_revision = |list: &Value, revision: &str| -> Value {
        items(list)
            .iter()
            .find(|rs| annotation(rs, REVISION) == revision)
            .cloned()
            .unwrap_or_else(|| panic!("no replica set of revision {revision} in {list:#}"))
    };
    let second = by_revision(&replica_sets, "2");
    assert_eq!(
        second["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.28"
    );
    assert_eq!(second["spec"]["replicas"], 2);
    assert_eq!(by_revision(&replica_sets, "1")["spec"]["replicas"], 0);
    let pods = k
        .get_until(&with_ns(&["get", "pods"]), |l| {
            items(l).len() == 2
                && items(l)
                    .iter()
                    .all(|p| p["spec"]["containers"][0]["image"] == "nginx:1.28")
        })
        .await;
    assert_eq!(items(&pods).len(), 2);

    // Undo: back to revision 1's template, which becomes revision 3.
    let undo = k
        .run(&with_ns(&["rollout", "undo", "deployment/web"]))
        .await;
    assert!(undo.out().contains("rolled back"), "{}", undo.stdout);
    let deployment = k
        .get_until(&with_ns(&["get", "deploy", "web"]), |d| {
            annotation(d, REVISION) == "3"
        })
        .await;
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    assert!(
        deployment["spec"]["template"]["metadata"]["labels"]
            .get("pod-template-hash")
            .is_none()
    );
    let status = k
        .run(&with_ns(&[
            "rollout",
            "status",
            "deployment/web",
            "--timeout=10s",
        ]))
        .await;
    assert!(
        status.out().contains("successfully rolled out"),
        "{}",
        status.stdout
    );
    let replica_sets = k.run(&with_ns(&["get", "rs", "-o", "json"])).await.json();
    assert_eq!(
        items(&replica_sets).len(),
        2,
        "revision 1's replica set is reused"
    );
    let third = by_revision(&replica_sets, "3");
    assert_eq!(third["metadata"]["name"], format!("web-{hash}"));
    assert_eq!(third["spec"]["replicas"], 2);

    let history = k
        .run(&with_ns(&["rollout", "history", "deployment/web"]))
        .await;
    let revisions: Vec<&str> = history
        .out()
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["2", "3"], "{}", history.stdout);

    // A restart patches the template's annotation: a new replica set, revision 4.
    k.run(&with_ns(&["rollout", "restart", "deployment/web"]))
        .await
        .out();
    let deployment = k
        .get_until(&with_ns(&["get", "deploy", "web"]), |d| {
            annotation(d, REVISION) == "4"
        })
        .await;
    assert!(
        deployment["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string()
    );
    let status = k
        .run(&with_ns(&[
            "rollout",
            "status",
            "deployment/web",
            "--timeout=10s",
        ]))
        .await;
    assert!(
        status.out().contains("successfully rolled out"),
        "{}",
        status.stdout
    );
    let replica_sets = k.run(&with_ns(&["get", "rs", "-o", "json"])).await.json();
    assert_eq!(items(&replica_sets).len(), 3);

    // Deleting the deployment takes its replica sets and pods with it.
    k.run(&with_ns(&["delete", "deployment", "web"]))
        .await
        .out();
    k.get_until(&with_ns(&["get", "pods"]), |l| items(l).is_empty())
        .await;
    let replica_sets = k.run(&with_ns(&["get", "rs", "-o", "json"])).await.json();
    assert!(items(&replica_sets).is_empty());
}

const STATEFUL_SET: &str = "\
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  replicas: 3
  serviceName: db
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      containers:
        - name: db
          image: postgres:15
";

#[tokio::test]
async fn a_stateful_set_scaled_down_deletes_its_highest_pods() {
    let Some(k) = Kubectl::start("a_stateful_set_scaled_down_deletes_its_highest_pods").await
    else {
        return;
    };
    k.apply("db.yaml", STATEFUL_SET).await;
    let pods = k
        .get_until(&["get", "pods", "-l", "app=db"], |l| items(l).len() == 3)
        .await;
    assert_eq!(names(&pods), ["db-0", "db-1", "db-2"]);
    for pod in items(&pods) {
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
        assert_eq!(
            pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
            pod["metadata"]["name"]
        );
        assert_eq!(pod["status"]["phase"], "Running");
    }
    let status = k
        .run(&["rollout", "status", "statefulset/db", "--timeout=10s"])
        .await;
    assert!(status.ok, "{}{}", status.stdout, status.stderr);
    k.run(&["scale", "statefulset", "db", "--replicas=1"])
        .await
        .out();
    let pods = k
        .get_until(&["get", "pods", "-l", "app=db"], |l| items(l).len() == 1)
        .await;
    assert_eq!(names(&pods), ["db-0"]);
    let stateful_set = k
        .get_until(&["get", "sts", "db"], |s| s["status"]["replicas"] == 1)
        .await;
    assert_eq!(stateful_set["status"]["readyReplicas"], 1);
}

const BROKEN: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: broken
spec:
  replicas: 1
  selector:
    matchLabels: {app: broken}
  template:
    metadata:
      labels: {app: broken}
      annotations:
        drkit.test/fail: \"true\"
    spec:
      containers:
        - name: app
          image: busybox:1.36
";

#[tokio::test]
async fn a_pod_marked_to_fail_never_gets_ready_and_the_rollout_times_out() {
    let Some(k) =
        Kubectl::start("a_pod_marked_to_fail_never_gets_ready_and_the_rollout_times_out").await
    else {
        return;
    };
    k.apply("broken.yaml", BROKEN).await;
    let pods = k
        .get_until(&["get", "pods", "-l", "app=broken"], |l| {
            items(l).len() == 1 && l["items"][0]["status"]["phase"] == "Running"
        })
        .await;
    let pod = &pods["items"][0];
    let ready = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "False");
    assert_eq!(pod["status"]["containerStatuses"][0]["ready"], false);
    let status = k
        .run(&["rollout", "status", "deployment/broken", "--timeout=2s"])
        .await;
    assert!(!status.ok, "{}", status.stdout);
    assert!(
        status
            .stdout
            .contains("0 of 1 updated replicas are available"),
        "{}{}",
        status.stdout,
        status.stderr
    );
    assert!(status.stderr.contains("timed out"), "{}", status.stderr);
}
