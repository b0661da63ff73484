//! Namespaces made and removed (waited gone), and the network-partition
//! drill's isolation applied, applied again and removed.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::Api;

use crate::common::setup;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_and_isolations_come_and_go() {
    let setup = setup().await;
    let ns = setup.namespace.as_str();
    let cluster = &setup.cluster;
    let incident = format!("{ns}-inc-42");
    let incident = incident.as_str();
    let labels = BTreeMap::from([("incident".to_owned(), "inc-42".to_owned())]);
    assert!(cluster.create_namespace(incident, &labels).await.unwrap());
    assert!(!cluster.create_namespace(incident, &labels).await.unwrap());

    let selector = BTreeMap::from([("app".to_owned(), "livekit".to_owned())]);
    let isolation = cluster.isolate(incident, &selector).await.unwrap();
    assert_eq!(isolation.policy, "drkit-isolate-livekit");
    let again = cluster.isolate(incident, &selector).await.unwrap();
    assert_eq!(again, isolation);
    let policies: Api<NetworkPolicy> = Api::namespaced(cluster.client().clone(), incident);
    let policy = policies.get(&isolation.policy).await.unwrap().spec.unwrap();
    assert_eq!(policy.pod_selector.unwrap().match_labels.unwrap(), selector);
    assert_eq!(
        policy.policy_types.unwrap(),
        ["Ingress".to_owned(), "Egress".to_owned()]
    );
    assert!(
        policy.ingress.is_none() && policy.egress.is_none(),
        "no rule lets anything through"
    );
    cluster.remove_isolation(&isolation).await.unwrap();
    assert!(policies.get_opt(&isolation.policy).await.unwrap().is_none());
    cluster.remove_isolation(&isolation).await.unwrap();

    let err = cluster.isolate("nope", &selector).await.unwrap_err();
    assert_eq!(
        dr_core::Error::from(err).kind(),
        dr_core::ErrorKind::NotFound
    );

    let wait = Duration::from_secs(5);
    assert!(cluster.delete_namespace(incident, wait).await.unwrap());
    assert!(!cluster.delete_namespace(incident, wait).await.unwrap());
}
