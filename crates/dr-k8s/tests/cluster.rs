//! A cluster from a kubeconfig context; bad kubeconfigs and unknown
//! contexts are clear errors.

use dr_k8s::{Cluster, Error};

use crate::common::stand_in;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubeconfig_context_reaches_its_cluster_and_bad_ones_say_why() {
    let Some(setup) = stand_in("it reads the stand-in's own kubeconfig and contexts").await else {
        return;
    };
    let ns = setup.namespace.as_str();
    assert_eq!(setup.cluster.name(), "test");
    assert_eq!(setup.cluster.default_namespace(), ns);
    let kubeconfig = &setup.kubeconfig;

    // The current context, where none is named.
    let current = Cluster::from_kubeconfig(kubeconfig, None).await.unwrap();
    assert_eq!(current.name(), "test");

    let unknown = Cluster::from_kubeconfig(kubeconfig, Some("dr-cluster"))
        .await
        .unwrap_err();
    assert!(
        matches!(&unknown, Error::UnknownContext { known, .. } if known == "test"),
        "{unknown}"
    );
    assert!(unknown.to_string().contains("dr-cluster"), "{unknown}");

    let missing = setup.dir.path().join("nope");
    let err = Cluster::from_kubeconfig(&missing, None).await.unwrap_err();
    assert!(matches!(err, Error::Kubeconfig { .. }), "{err}");
    assert!(err.to_string().contains("nope"), "{err}");

    let garbage = setup.dir.path().join("garbage");
    std::fs::write(&garbage, "clusters: [this is not: a kubeconfig").unwrap();
    let err = Cluster::from_kubeconfig(&garbage, None).await.unwrap_err();
    assert!(matches!(err, Error::Kubeconfig { .. }), "{err}");
    let core: dr_core::Error = err.into();
    assert_eq!(core.kind(), dr_core::ErrorKind::InvalidInput);
}
