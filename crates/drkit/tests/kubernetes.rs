//! `drkit kubernetes`: the printed YAML read back as Kubernetes's own types
//! (k8s-openapi), for a config with a local repository and one with S3.

use crate::common::{PASSWORD, Setup, text};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, PodTemplateSpec, Service, ServiceAccount,
};
use serde::Deserialize;

/// The documents of a YAML stream, each as a generic value with its kind.
fn documents(yaml: &str) -> Vec<(String, serde_yaml::Value)> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| {
            let value = serde_yaml::Value::deserialize(doc).unwrap();
            let kind = value["kind"].as_str().unwrap_or_default().to_owned();
            (kind, value)
        })
        .collect()
}

/// The one document of `kind`, as Kubernetes's type for it.
fn one<T: serde::de::DeserializeOwned>(docs: &[(String, serde_yaml::Value)], kind: &str) -> T {
    let mut found = docs.iter().filter(|(k, _)| k == kind);
    let (_, value) = found.next().unwrap_or_else(|| panic!("no {kind}"));
    assert!(found.next().is_none(), "several {kind}");
    serde_yaml::from_value(value.clone()).unwrap_or_else(|e| panic!("{kind}: {e}"))
}

fn with_agent(setup: &Setup, schedules: &str) {
    let config = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        format!(
            "{config}\n{schedules}\n[agent]\nlisten = \"0.0.0.0:9187\"\nprune = {{ cron = \"0 4 * * 0\" }}\nshutdown_grace = \"10m\"\n"
        ),
    )
    .unwrap();
}

const SCHEDULES: &str = r#"[[component.schedule]]
job = "backup"
cron = "0 2 * * *"
timezone = "Asia/Jakarta"

[[component.schedule]]
job = "verify"
cron = "0 */6 * * *"
"#;

#[tokio::test]
async fn the_agents_deployment_reads_back_as_kubernetes_objects() {
    let setup = Setup::new(5432, "pg-secret-text", r#"{ rto = "30m", rpo = "15m" }"#);
    with_agent(&setup, SCHEDULES);
    let output = setup
        .drkit(&[
            "kubernetes",
            "manifests",
            "--namespace",
            "dr",
            "--image",
            "registry.example/drkit:1.0",
        ])
        .await;
    assert!(output.status.success(), "{}", text(&output));
    let yaml = String::from_utf8(output.stdout).unwrap();
    // Secrets are referenced, never printed.
    assert!(
        !yaml.contains(PASSWORD) && !yaml.contains("pg-secret-text"),
        "{yaml}"
    );
    assert!(
        yaml.contains("kubectl create secret generic drkit-secrets -n dr"),
        "{yaml}"
    );
    let docs = documents(&yaml);
    assert!(docs.iter().all(|(kind, _)| kind != "Secret"));

    let config: ConfigMap = one(&docs, "ConfigMap");
    let text_in_map = &config.data.as_ref().unwrap()["drkit.toml"];
    assert_eq!(
        text_in_map,
        &std::fs::read_to_string(&setup.config).unwrap()
    );
    assert_eq!(config.metadata.namespace.as_deref(), Some("dr"));

    let account: ServiceAccount = one(&docs, "ServiceAccount");
    assert_eq!(account.automount_service_account_token, Some(false));

    let claim: PersistentVolumeClaim = one(&docs, "PersistentVolumeClaim");
    let requests = claim.spec.unwrap().resources.unwrap().requests.unwrap();
    assert_eq!(requests["storage"].0, "100Gi");

    let deployment: Deployment = one(&docs, "Deployment");
    let spec = deployment.spec;
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.strategy.unwrap().type_.as_deref(), Some("Recreate"));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("drkit"));
    assert_eq!(pod.termination_grace_period_seconds, Some(630));
    let container = &pod.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("registry.example/drkit:1.0")
    );
    assert_eq!(container.args.as_deref(), Some(&["agent".to_owned()][..]));
    assert_eq!(container.ports.as_ref().unwrap()[0].container_port, 9187);
    let probe = container
        .liveness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(probe.path.as_deref(), Some("/healthz"));
    let mounts = container.volume_mounts.as_ref().unwrap();
    let mounted = |path: &std::path::Path| {
        mounts
            .iter()
            .any(|m| m.mount_path == path.display().to_string())
    };
    assert!(mounted(&setup.repo), "the repository's volume at its path");
    assert!(mounted(&setup.dir.path().join("repository.pass")));
    assert!(mounted(&setup.dir.path().join("pg.pass")));
    let env = container.env.as_ref().unwrap();
    assert!(env.iter().any(|e| e.name == "DRKIT_CONFIG"));

    let service: Service = one(&docs, "Service");
    assert_eq!(service.spec.unwrap().ports.unwrap()[0].port, 9187);
}

#[tokio::test]
async fn cronjobs_follow_the_plans_schedules() {
    let setup = Setup::new(5432, "pg", r#"{ rto = "30m", rpo = "15m" }"#);
    with_agent(&setup, SCHEDULES);
    let output = setup
        .drkit(&["kubernetes", "manifests", "--cronjobs"])
        .await;
    assert!(output.status.success(), "{}", text(&output));
    let docs = documents(&String::from_utf8(output.stdout).unwrap());
    assert!(docs.iter().all(|(kind, _)| kind != "Deployment"));
    let cronjobs: Vec<CronJob> = docs
        .iter()
        .filter(|(kind, _)| kind == "CronJob")
        .map(|(_, v)| serde_yaml::from_value(v.clone()).unwrap())
        .collect();
    let mut seen = Vec::new();
    for cronjob in &cronjobs {
        let spec = &cronjob.spec;
        assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
        let pod = spec
            .job_template
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let args = pod.containers[0].args.clone().unwrap();
        seen.push((spec.schedule.clone(), spec.time_zone.clone().unwrap(), args));
    }
    let strings = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        seen,
        [
            (
                "0 2 * * *".to_owned(),
                "Asia/Jakarta".to_owned(),
                strings(&["--quiet", "backup", "postgres/main", "--forget"])
            ),
            (
                "0 */6 * * *".to_owned(),
                "UTC".to_owned(),
                strings(&["--quiet", "verify", "--component", "postgres/main"])
            ),
            (
                "0 4 * * 0".to_owned(),
                "UTC".to_owned(),
                strings(&["--quiet", "prune"])
            ),
        ]
    );

    // A CronJob cannot run a schedule with seconds: said, exit 2.
    let config = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace("\"0 2 * * *\"", "\"*/10 * * * * *\"");
    std::fs::write(&setup.config, config).unwrap();
    let output = setup
        .drkit(&["kubernetes", "manifests", "--cronjobs"])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("seconds field"), "{}", text(&output));
}

#[tokio::test]
async fn an_s3_repository_takes_credentials_from_an_optional_secret_or_the_service_account() {
    let setup = Setup::new(5432, "pg", r#"{ rto = "30m", rpo = "15m" }"#);
    let password_file = setup.dir.path().join("repository.pass");
    setup.set_repository(&format!(
        "[repository]\nlocation = \"s3://dr-bucket/drkit\"\npassword = {{ file = \"{}\" }}\n",
        password_file.display()
    ));
    with_agent(&setup, "");
    let output = setup
        .drkit(&[
            "kubernetes",
            "manifests",
            "--service-account-annotation",
            "eks.amazonaws.com/role-arn=arn:aws:iam::123456789012:role/drkit",
        ])
        .await;
    assert!(output.status.success(), "{}", text(&output));
    let docs = documents(&String::from_utf8(output.stdout).unwrap());
    assert!(docs.iter().all(|(kind, _)| kind != "PersistentVolumeClaim"));
    let account: ServiceAccount = one(&docs, "ServiceAccount");
    assert_eq!(
        account.metadata.annotations.unwrap()["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/drkit"
    );
    let deployment: Deployment = one(&docs, "Deployment");
    let pod = deployment.spec.template.spec.unwrap();
    let env = pod.containers[0].env.clone().unwrap();
    let key = env
        .iter()
        .find(|e| e.name == "AWS_SECRET_ACCESS_KEY")
        .and_then(|e| e.value_from.as_ref()?.secret_key_ref.clone())
        .unwrap();
    assert_eq!((key.name.as_str(), key.optional), ("drkit-s3", Some(true)));
}

#[tokio::test]
async fn a_postgres_pod_gets_the_binary_from_an_init_container() {
    let setup = Setup::new(5432, "pg", r#"{ rto = "30m", rpo = "15m" }"#);
    let output = setup
        .drkit(&["kubernetes", "postgres-patch", "--container", "database"])
        .await;
    assert!(output.status.success(), "{}", text(&output));
    let yaml = String::from_utf8(output.stdout).unwrap();
    assert!(yaml.contains("wal push %p"), "{yaml}");
    let patch: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    let template: PodTemplateSpec =
        serde_yaml::from_value(patch["spec"]["template"].clone()).unwrap();
    let pod = template.spec.unwrap();
    let init = &pod.init_containers.unwrap()[0];
    assert_eq!(
        init.args.as_deref().unwrap(),
        ["kubernetes", "copy-binary", "/drkit/bin/drkit"]
    );
    assert_eq!(pod.containers[0].name, "database");
    let mounts = pod.containers[0].volume_mounts.clone().unwrap();
    assert!(mounts.iter().any(|m| m.mount_path == "/drkit/bin"));

    // What the init container runs: a working copy of the binary.
    let dest = setup.dir.path().join("bin-drkit");
    let copy = setup
        .drkit(&["kubernetes", "copy-binary", dest.to_str().unwrap()])
        .await;
    assert!(copy.status.success(), "{}", text(&copy));
    let version = tokio::process::Command::new(&dest)
        .arg("--version")
        .output()
        .await
        .unwrap();
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("drkit "));
}

#[tokio::test]
async fn a_password_from_a_command_cannot_go_into_a_pod() {
    let setup = Setup::new(5432, "pg", r#"{ rto = "30m", rpo = "15m" }"#);
    setup.set_repository(&format!(
        "[repository]\nlocation = \"{}\"\npassword = {{ command = [\"pass\", \"show\", \"drkit\"] }}\n",
        setup.repo.display()
    ));
    with_agent(&setup, "");
    let output = setup.drkit(&["kubernetes", "manifests"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("\"pass\""), "{}", text(&output));
}

/// A config whose agent runs in the cluster: a resource backup of that
/// cluster, one of a DR cluster by its kubeconfig, and the agent's Lease.
fn in_cluster_agent() -> Setup {
    let setup = Setup::with_components(|dir| {
        format!(
            "[[component]]\nid = \"kubernetes/all\"\nkind = \"kubernetes\"\n\
             objectives = {{ rto = \"1h\", rpo = \"24h\" }}\nretention = \"daily=7\"\n\
             kubernetes = {{ exclude_namespaces = [\"kube-system\"] }}\n\n\
             [[component]]\nid = \"kubernetes/dr\"\nkind = \"kubernetes\"\n\
             objectives = {{ rto = \"1h\", rpo = \"24h\" }}\nretention = \"daily=7\"\n\
             kubernetes = {{ kubeconfig = \"{}\", context = \"dr-cluster\" }}\n",
            dir.join("dr.kubeconfig").display()
        )
    });
    with_agent(&setup, "");
    let config = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        format!("{config}\n[agent.lease]\nnamespace = \"coordination\"\nname = \"drkit-agent\"\n"),
    )
    .unwrap();
    setup
}

#[tokio::test]
async fn an_agent_in_the_cluster_gets_a_token_and_the_roles_it_needs() {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    let setup = in_cluster_agent();
    // A binding names the ServiceAccount's namespace.
    let output = setup.drkit(&["kubernetes", "manifests"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("pass --namespace"),
        "{}",
        text(&output)
    );

    let output = setup
        .drkit(&["kubernetes", "manifests", "--namespace", "dr"])
        .await;
    assert!(output.status.success(), "{}", text(&output));
    let docs = documents(&String::from_utf8(output.stdout).unwrap());
    let account: ServiceAccount = one(&docs, "ServiceAccount");
    assert_eq!(account.automount_service_account_token, Some(true));
    let deployment: Deployment = one(&docs, "Deployment");
    let pod = deployment.spec.template.spec.unwrap();
    assert_eq!(pod.automount_service_account_token, Some(true));
    // The other cluster's kubeconfig is a file of the Secret.
    let mounts = pod.containers[0].volume_mounts.clone().unwrap();
    let kubeconfig = setup.dir.path().join("dr.kubeconfig");
    assert!(
        mounts
            .iter()
            .any(|m| m.mount_path == kubeconfig.display().to_string())
    );

    // The Lease: got, created and updated in its own namespace, that one only.
    let role: Role = one(&docs, "Role");
    assert_eq!(role.metadata.namespace.as_deref(), Some("coordination"));
    let rules = role.rules.unwrap();
    let verbs = |i: usize| rules[i].verbs.clone();
    assert_eq!(verbs(0), ["get", "update"]);
    assert_eq!(
        rules[0].resource_names.as_deref(),
        Some(&["drkit-agent".to_owned()][..])
    );
    assert_eq!(
        rules[0].resources.as_deref(),
        Some(&["leases".to_owned()][..])
    );
    assert_eq!(verbs(1), ["create"]);
    let binding: RoleBinding = one(&docs, "RoleBinding");
    assert_eq!(binding.metadata.namespace.as_deref(), Some("coordination"));
    assert_eq!(binding.role_ref.name, role.metadata.name.unwrap());
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        (
            subject.kind.as_str(),
            subject.name.as_str(),
            subject.namespace.as_deref()
        ),
        ("ServiceAccount", "drkit", Some("dr"))
    );

    // The in-cluster component reads every resource.
    let reader: ClusterRole = one(&docs, "ClusterRole");
    assert_eq!(reader.metadata.namespace, None);
    assert_eq!(reader.rules.unwrap()[0].verbs, ["get", "list"]);
    let binding: ClusterRoleBinding = one(&docs, "ClusterRoleBinding");
    assert_eq!(binding.role_ref.kind, "ClusterRole");
}

/// kubectl, where installed.
fn kubectl() -> Option<std::path::PathBuf> {
    let usr = std::path::PathBuf::from("/usr/bin/kubectl");
    if usr.is_file() {
        return Some(usr);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("kubectl"))
        .find(|p| p.is_file())
}

#[tokio::test]
async fn the_manifests_are_applied_with_kubectl_to_the_test_api_server() {
    let Some(kubectl) = kubectl() else {
        eprintln!(
            "SKIPPED: no kubectl at /usr/bin/kubectl or on PATH; this test applies the manifests with it"
        );
        return;
    };
    let server = dr_k8s_testkit::KubeApiServer::start().await.unwrap();
    let setup = in_cluster_agent();
    let kubeconfig = server.kubeconfig(setup.dir.path()).await.unwrap();
    let apply = |yaml: Vec<u8>| {
        let kubectl = kubectl.clone();
        let kubeconfig = kubeconfig.clone();
        async move {
            let mut child = tokio::process::Command::new(kubectl)
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["apply", "-f", "-"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut stdin, &yaml)
                .await
                .unwrap();
            drop(stdin);
            let output = child.wait_with_output().await.unwrap();
            assert!(output.status.success(), "kubectl apply: {}", text(&output));
            String::from_utf8(output.stdout).unwrap()
        }
    };
    apply(
        b"apiVersion: v1\nkind: Namespace\nmetadata: { name: dr }\n---\napiVersion: v1\nkind: Namespace\nmetadata: { name: coordination }\n".to_vec(),
    )
    .await;
    for extra in [&[][..], &["--cronjobs"][..]] {
        let mut args = vec!["kubernetes", "manifests", "--namespace", "dr"];
        args.extend_from_slice(extra);
        let output = setup.drkit(&args).await;
        assert!(output.status.success(), "{}", text(&output));
        let kinds: Vec<String> = documents(&String::from_utf8(output.stdout.clone()).unwrap())
            .into_iter()
            .map(|(kind, _)| kind)
            .collect();
        let applied = apply(output.stdout).await;
        // kubectl names each object it applied: every document, none refused.
        assert_eq!(applied.lines().count(), kinds.len(), "{kinds:?}\n{applied}");
        for kind in &kinds {
            let lower = kind.to_ascii_lowercase();
            assert!(
                applied.lines().any(|l| l.starts_with(&lower)
                    || l.contains(&format!("{lower}."))
                    || l.contains(&format!("{lower}/"))),
                "{kind} not applied: {applied}"
            );
        }
    }
    // Read back by kubectl: the agent's Deployment and its Lease's Role.
    let output = tokio::process::Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "get",
            "deployment,cronjob,role,rolebinding,clusterrole",
            "-A",
            "-o",
            "name",
        ])
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let names = String::from_utf8(output.stdout).unwrap();
    for kind in [
        "deployment.apps/",
        "cronjob.batch/",
        "role.rbac.authorization.k8s.io/",
        "rolebinding.rbac.authorization.k8s.io/",
    ] {
        assert!(names.contains(kind), "{kind} in {names}");
    }
}
