//! `drkit kubernetes manifests`: the YAML that runs drkit in a cluster from
//! the config at hand, and `drkit kubernetes postgres-patch`: what a
//! PostgreSQL pod needs for `archive_command = 'drkit wal push %p'`.
//!
//! - The config file becomes a ConfigMap, mounted where the pod reads it.
//! - Every file the config reads a secret from (the repository password,
//!   a server password, TLS certificates and keys, a kubeconfig) is a key of one Secret
//!   the operator creates, mounted at the path the config names; every
//!   `env` password source is a variable from that Secret. The manifests
//!   reference the Secret and never hold a secret value; their header says
//!   how to create it.
//! - S3 credentials are the `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`
//!   of an optional Secret, or workload identity through the
//!   ServiceAccount's annotations (`--service-account-annotation`).
//! - A ServiceAccount, its token mounted only where drkit calls the API of
//!   the cluster it runs in: for `[agent.lease]` without a kubeconfig, a
//!   Role and RoleBinding that let it get, create and update that one
//!   Lease; for a `kubernetes` component without a kubeconfig, a
//!   ClusterRole and ClusterRoleBinding that let it get and list every
//!   resource (RBAC cannot leave Secrets out; the backup does, unless
//!   asked). Otherwise no token: the least privilege is none.
//! - A local repository is a PersistentVolumeClaim mounted at its path.
//! - The agent: a Deployment of one replica with `strategy: Recreate`
//!   (two agents must never archive or prune at once) and a Service for
//!   `/metrics`; or (`--cronjobs`) one CronJob per schedule as the DR plans
//!   write them (`concurrencyPolicy: Forbid`, `timeZone`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dr_storage::Location;
use drkit::{Config, Job, SecretSource};
use serde_json::{Value, json};

use crate::failure::{Failure, Outcome};
use crate::yaml::to_yaml;

/// Where the pod reads the config.
const CONFIG_DIR: &str = "/etc/drkit";
const CONFIG_FILE: &str = "/etc/drkit/drkit.toml";
/// Where the agent's key cache lives in the pod (an emptyDir).
const CACHE_DIR: &str = "/var/cache/drkit";
/// Where an init container puts the binary in a PostgreSQL pod.
const BIN_DIR: &str = "/drkit/bin";

/// The image `drkit kubernetes` names unless told another.
pub(crate) const DEFAULT_IMAGE: &str = concat!("drkit:", env!("CARGO_PKG_VERSION"));

/// What `drkit kubernetes manifests` is asked for.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ManifestOptions {
    /// The image, with drkit at /usr/local/bin/drkit as its entrypoint.
    #[arg(long, default_value = DEFAULT_IMAGE)]
    pub(crate) image: String,
    /// The namespace of every object; else kubectl's.
    #[arg(long)]
    pub(crate) namespace: Option<String>,
    /// The name of the objects.
    #[arg(long, default_value = "drkit")]
    pub(crate) name: String,
    /// One CronJob per schedule instead of the agent's Deployment.
    #[arg(long)]
    pub(crate) cronjobs: bool,
    /// What a local repository's volume claims.
    #[arg(long, default_value = "100Gi")]
    pub(crate) repository_size: String,
    /// An annotation of the ServiceAccount, `key=value`, such as
    /// eks.amazonaws.com/role-arn for workload identity; repeatable.
    #[arg(long = "service-account-annotation", value_parser = crate::parse_label)]
    pub(crate) service_account_annotations: Vec<(String, String)>,
}

/// The config's files and variables that hold secrets, as keys of one Secret.
struct Secrets {
    /// Key -> the path the config reads it from.
    files: BTreeMap<String, PathBuf>,
    /// Variable name -> key.
    variables: BTreeMap<String, String>,
}

impl Secrets {
    fn of(config: &Config) -> Result<Self, Failure> {
        let mut secrets = Secrets {
            files: BTreeMap::new(),
            variables: BTreeMap::new(),
        };
        let mut sources = vec![config.repository().password()];
        let mut files: Vec<&Path> = Vec::new();
        for component in config.components() {
            if let Some(pg) = component.connection() {
                sources.extend(pg.password());
                files.extend(pg.tls().ca_file());
                if let Some((cert, key)) = pg.tls().client_cert() {
                    files.extend([cert, key]);
                }
            }
            // A kubeconfig holds the cluster's credentials.
            if let Some(kubeconfig) = component.kubernetes().and_then(|k| k.kubeconfig()) {
                files.push(kubeconfig);
            }
            if let Some(redis) = component.redis() {
                sources.extend(redis.password());
                if let drkit::RedisTls::VerifyFull {
                    ca_file,
                    client_cert,
                } = redis.tls()
                {
                    files.push(ca_file);
                    if let Some((cert, key)) = client_cert {
                        files.extend([cert.as_path(), key.as_path()]);
                    }
                }
            }
        }
        for source in sources {
            match source {
                SecretSource::File(path) => files.push(path),
                SecretSource::Env(name) => {
                    let key = secrets.key_for(&name.to_ascii_lowercase().replace('_', "-"));
                    secrets.variables.insert(name.clone(), key);
                }
                SecretSource::Command(argv) => {
                    return Err(Failure::Usage(format!(
                        "a password read by running {:?} cannot be carried into a pod; \
                         use a file or an environment variable for it",
                        argv.first().map(String::as_str).unwrap_or_default()
                    )));
                }
                _ => {}
            }
        }
        for path in files {
            if secrets.files.values().any(|p| p == path) {
                continue;
            }
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("secret");
            let key = secrets.key_for(&sanitize(name));
            secrets.files.insert(key, path.to_owned());
        }
        Ok(secrets)
    }

    /// The Secret `secret_name` as the volume `volume`, and a mount of each
    /// of its files at the path the config reads it from (group-readable:
    /// the pod's fsGroup reads them); `None` when the config reads no file.
    fn volume(&self, volume: &str, secret_name: &str) -> Option<(Value, Vec<Value>)> {
        if self.files.is_empty() {
            return None;
        }
        let mounts = self
            .files
            .iter()
            .map(|(key, path)| {
                json!({
                    "name": volume,
                    "mountPath": path.display().to_string(),
                    "subPath": key,
                    "readOnly": true,
                })
            })
            .collect();
        let volume = json!({
            "name": volume,
            "secret": { "secretName": secret_name, "defaultMode": 0o440 },
        });
        Some((volume, mounts))
    }

    /// `wanted`, or `wanted-2`, ... if a key has that name already.
    fn key_for(&self, wanted: &str) -> String {
        let taken = |k: &str| self.files.contains_key(k) || self.variables.values().any(|v| v == k);
        if !taken(wanted) {
            return wanted.to_owned();
        }
        (2..)
            .map(|n| format!("{wanted}-{n}"))
            .find(|k| !taken(k))
            .unwrap_or_default()
    }
}

/// A Secret key: letters, digits, `-`, `_` and `.`.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A DNS-1123 label from a component id or job: `postgres/main` ->
/// `postgres-main`.
fn label(text: &str) -> String {
    let mut out: String = text
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    out = out.trim_matches('-').to_owned();
    out.truncate(40);
    out.trim_end_matches('-').to_owned()
}

/// Prints the manifests for `config` (read from `config_path`).
pub(crate) fn manifests(config: &Config, config_path: &Path, options: &ManifestOptions) -> Outcome {
    let text = std::fs::read_to_string(config_path)
        .map_err(|e| Failure::of(format_args!("reading {}", config_path.display()), &e))?;
    let secrets = Secrets::of(config)?;
    let name = &options.name;
    let secret_name = format!("{name}-secrets");
    let s3_secret = format!("{name}-s3");

    let lease = config
        .agent()
        .and_then(|agent| agent.lease())
        .filter(|lease| lease.kubeconfig().is_none());
    let reads_cluster = config
        .components()
        .iter()
        .any(|c| c.kubernetes().is_some_and(|k| k.kubeconfig().is_none()));
    let token = lease.is_some() || reads_cluster;
    let mut docs = Vec::new();
    docs.push(service_account(options, token));
    if token && options.namespace.is_none() {
        return Err(Failure::Usage(
            "drkit calls the API of the cluster it runs in ([agent.lease] or a kubernetes \
             component without a kubeconfig), and a role binding names the ServiceAccount's \
             namespace: pass --namespace"
                .to_owned(),
        ));
    }
    if let Some(lease) = lease {
        docs.extend(lease_role(lease, options));
    }
    if reads_cluster {
        docs.extend(cluster_reader(options));
    }
    docs.push(object(
        "v1",
        "ConfigMap",
        &format!("{name}-config"),
        options,
        json!({ "data": { "drkit.toml": text } }),
    ));
    let mut volumes = vec![
        json!({ "name": "config", "configMap": { "name": format!("{name}-config") } }),
        json!({ "name": "cache", "emptyDir": {} }),
        // Restore tests run a scratch server there; the root is read-only.
        json!({ "name": "tmp", "emptyDir": {} }),
    ];
    let mut mounts = vec![
        json!({ "name": "config", "mountPath": CONFIG_DIR, "readOnly": true }),
        json!({ "name": "cache", "mountPath": CACHE_DIR }),
        json!({ "name": "tmp", "mountPath": "/tmp" }),
    ];
    if let Some((volume, files)) = secrets.volume("secrets", &secret_name) {
        volumes.push(volume);
        mounts.extend(files);
    }
    if let Location::Local(path) = config.repository().location() {
        docs.push(object(
            "v1",
            "PersistentVolumeClaim",
            &format!("{name}-repository"),
            options,
            json!({ "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": { "requests": { "storage": options.repository_size } },
            }}),
        ));
        volumes.push(json!({
            "name": "repository",
            "persistentVolumeClaim": { "claimName": format!("{name}-repository") },
        }));
        mounts.push(
            json!({ "name": "repository", "mountPath": path.as_path().display().to_string() }),
        );
    }
    let mut env = vec![
        json!({ "name": "DRKIT_CONFIG", "value": CONFIG_FILE }),
        json!({ "name": "XDG_CACHE_HOME", "value": CACHE_DIR }),
    ];
    for (variable, key) in &secrets.variables {
        env.push(json!({
            "name": variable,
            "valueFrom": { "secretKeyRef": { "name": secret_name, "key": key } },
        }));
    }
    if matches!(config.repository().location(), Location::S3(_)) {
        for (variable, key) in [
            ("AWS_ACCESS_KEY_ID", "access-key-id"),
            ("AWS_SECRET_ACCESS_KEY", "secret-access-key"),
        ] {
            env.push(json!({
                "name": variable,
                "valueFrom": { "secretKeyRef": { "name": s3_secret, "key": key, "optional": true } },
            }));
        }
    }
    let pod = PodParts {
        volumes,
        mounts,
        env,
        token,
    };

    if options.cronjobs {
        let mut any = false;
        for component in config.components() {
            for (index, job) in component.schedules().iter().enumerate() {
                let mut args = match job.job() {
                    Job::Backup => vec![
                        "backup".to_owned(),
                        component.id().to_string(),
                        "--forget".to_owned(),
                    ],
                    Job::Verify => vec![
                        "verify".to_owned(),
                        "--component".to_owned(),
                        component.id().to_string(),
                    ],
                    // The image then needs PostgreSQL's server programs.
                    Job::RestoreTest => vec!["restore-test".to_owned(), component.id().to_string()],
                    other => {
                        return Err(Failure::Usage(format!("no CronJob runs a {other} job")));
                    }
                };
                args.insert(0, "--quiet".to_owned());
                let job_name = format!(
                    "{name}-{}-{}{}",
                    label(component.id().as_str()),
                    job.job(),
                    if index > 0 {
                        format!("-{index}")
                    } else {
                        String::new()
                    }
                );
                docs.push(cronjob(&job_name, job.schedule(), &args, &pod, options)?);
                any = true;
            }
        }
        if let Some(agent) = config.agent() {
            let args = vec!["--quiet".to_owned(), "prune".to_owned()];
            docs.push(cronjob(
                &format!("{name}-prune"),
                agent.prune(),
                &args,
                &pod,
                options,
            )?);
            any = true;
        }
        if !any {
            return Err(Failure::Usage(format!(
                "{} has no schedules, so there is no CronJob to print",
                config.origin()
            )));
        }
    } else {
        let agent = config.agent().ok_or_else(|| {
            Failure::Usage(format!(
                "{} has no [agent] table, which the Deployment runs; add one, or pass --cronjobs",
                config.origin()
            ))
        })?;
        let port = agent.listen().port();
        docs.push(deployment(
            options,
            &pod,
            port,
            agent.shutdown_grace().as_secs(),
        ));
        docs.push(object(
            "v1",
            "Service",
            &format!("{name}-metrics"),
            options,
            json!({ "spec": {
                "selector": selector(options),
                "ports": [{ "name": "metrics", "port": port, "targetPort": "metrics" }],
            }}),
        ));
    }

    print!(
        "{}",
        header(config, &secrets, &secret_name, &s3_secret, options)
    );
    for doc in &docs {
        print!("---\n{}", to_yaml(doc));
    }
    Ok(())
}

/// The comments that open the output: what to create by hand.
fn header(
    config: &Config,
    secrets: &Secrets,
    secret_name: &str,
    s3_secret: &str,
    options: &ManifestOptions,
) -> String {
    let namespace = options
        .namespace
        .as_deref()
        .map(|n| format!(" -n {n}"))
        .unwrap_or_default();
    let mut out = format!(
        "# drkit in Kubernetes, from {}.\n# Apply: drkit kubernetes manifests | kubectl apply{namespace} -f -\n",
        config.origin()
    );
    if !secrets.files.is_empty() || !secrets.variables.is_empty() {
        out.push_str(&format!(
            "# First create the Secret the pods read (values never appear here):\n#   kubectl create secret generic {secret_name}{namespace}"
        ));
        for (key, path) in &secrets.files {
            out.push_str(&format!(" \\\n#     --from-file={key}={}", path.display()));
        }
        for (variable, key) in &secrets.variables {
            out.push_str(&format!(" \\\n#     --from-literal={key}=\"${variable}\""));
        }
        out.push('\n');
    }
    if matches!(config.repository().location(), Location::S3(_)) {
        out.push_str(&format!(
            "# S3 credentials: workload identity (--service-account-annotation), or\n#   kubectl create secret generic {s3_secret}{namespace} \\\n#     --from-literal=access-key-id=... --from-literal=secret-access-key=...\n"
        ));
    }
    out
}

/// What every drkit pod has.
struct PodParts {
    volumes: Vec<Value>,
    mounts: Vec<Value>,
    env: Vec<Value>,
    /// Whether the ServiceAccount's token is mounted: drkit calls the API
    /// of the cluster it runs in.
    token: bool,
}

impl PodParts {
    fn spec(&self, options: &ManifestOptions, container: Value, restart: &str) -> Value {
        json!({
            "serviceAccountName": options.name,
            "automountServiceAccountToken": self.token,
            "restartPolicy": restart,
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": 65532,
                "runAsGroup": 65532,
                "fsGroup": 65532,
                "seccompProfile": { "type": "RuntimeDefault" },
            },
            "containers": [container],
            "volumes": self.volumes,
        })
    }

    fn container(&self, options: &ManifestOptions, args: &[String]) -> Value {
        json!({
            "name": "drkit",
            "image": options.image,
            "args": args,
            "env": self.env,
            "volumeMounts": self.mounts,
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "capabilities": { "drop": ["ALL"] },
            },
            "resources": { "requests": { "cpu": "100m", "memory": "256Mi" } },
        })
    }
}

fn labels(options: &ManifestOptions) -> Value {
    json!({
        "app.kubernetes.io/name": "drkit",
        "app.kubernetes.io/instance": options.name,
    })
}

fn selector(options: &ManifestOptions) -> Value {
    labels(options)
}

/// An object with its metadata and `rest` merged in.
fn object(
    api_version: &str,
    kind: &str,
    name: &str,
    options: &ManifestOptions,
    rest: Value,
) -> Value {
    let mut metadata = json!({ "name": name, "labels": labels(options) });
    if let Some(namespace) = &options.namespace {
        metadata["namespace"] = json!(namespace);
    }
    let mut object = json!({ "apiVersion": api_version, "kind": kind, "metadata": metadata });
    if let (Value::Object(target), Value::Object(rest)) = (&mut object, rest) {
        target.extend(rest);
    }
    object
}

fn service_account(options: &ManifestOptions, token: bool) -> Value {
    let mut account = object(
        "v1",
        "ServiceAccount",
        &options.name,
        options,
        json!({ "automountServiceAccountToken": token }),
    );
    if !options.service_account_annotations.is_empty() {
        let annotations: serde_json::Map<String, Value> = options
            .service_account_annotations
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        account["metadata"]["annotations"] = Value::Object(annotations);
    }
    account
}

/// The ServiceAccount as the subject of a binding.
fn subject(options: &ManifestOptions) -> Value {
    json!([{
        "kind": "ServiceAccount",
        "name": options.name,
        "namespace": options.namespace,
    }])
}

/// A Role in the Lease's namespace that lets the agent get, create and
/// update that Lease (a create cannot be limited to a name), and its
/// binding to the ServiceAccount.
fn lease_role(lease: &drkit::LeaseSettings, options: &ManifestOptions) -> [Value; 2] {
    let name = format!("{}-lease", options.name);
    let in_lease_namespace = |mut object: Value| {
        object["metadata"]["namespace"] = json!(lease.namespace());
        object
    };
    let leases = |verbs: &[&str]| json!({ "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": verbs });
    let mut named = leases(&["get", "update"]);
    named["resourceNames"] = json!([lease.name()]);
    [
        in_lease_namespace(object(
            "rbac.authorization.k8s.io/v1",
            "Role",
            &name,
            options,
            json!({ "rules": [named, leases(&["create"])] }),
        )),
        in_lease_namespace(object(
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            &name,
            options,
            json!({
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name },
                "subjects": subject(options),
            }),
        )),
    ]
}

/// A ClusterRole that lets a resource backup get and list every resource,
/// and its binding to the ServiceAccount.
fn cluster_reader(options: &ManifestOptions) -> [Value; 2] {
    let name = format!("{}-read", options.name);
    let cluster_scoped = |mut object: Value| {
        if let Some(metadata) = object["metadata"].as_object_mut() {
            metadata.remove("namespace");
        }
        object
    };
    [
        cluster_scoped(object(
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            &name,
            options,
            json!({ "rules": [{ "apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list"] }] }),
        )),
        cluster_scoped(object(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            &name,
            options,
            json!({
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": name,
                },
                "subjects": subject(options),
            }),
        )),
    ]
}

fn deployment(options: &ManifestOptions, pod: &PodParts, port: u16, grace_seconds: u64) -> Value {
    let mut container = pod.container(options, &["agent".to_owned()]);
    container["ports"] = json!([{ "name": "metrics", "containerPort": port }]);
    container["livenessProbe"] = json!({
        "httpGet": { "path": "/healthz", "port": "metrics" },
        "periodSeconds": 30,
        "failureThreshold": 3,
    });
    container["readinessProbe"] = json!({
        "httpGet": { "path": "/healthz", "port": "metrics" },
        "periodSeconds": 10,
    });
    let mut spec = pod.spec(options, container, "Always");
    // SIGTERM, the agent's grace for a running backup, and time to exit.
    spec["terminationGracePeriodSeconds"] = json!(grace_seconds + 30);
    object(
        "apps/v1",
        "Deployment",
        &options.name,
        options,
        json!({ "spec": {
            // Two agents must never archive or prune at once.
            "replicas": 1,
            "strategy": { "type": "Recreate" },
            "selector": { "matchLabels": selector(options) },
            "template": {
                "metadata": {
                    "labels": labels(options),
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": port.to_string(),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": spec,
            },
        }}),
    )
}

fn cronjob(
    name: &str,
    schedule: &drkit::Schedule,
    args: &[String],
    pod: &PodParts,
    options: &ManifestOptions,
) -> Result<Value, Failure> {
    let cron = schedule.cron().as_str();
    if cron.split_whitespace().count() != 5 && !cron.starts_with('@') {
        return Err(Failure::Usage(format!(
            "the schedule \"{cron}\" has a seconds field, which a Kubernetes CronJob cannot run; \
             use the agent's Deployment for it"
        )));
    }
    let container = pod.container(options, args);
    Ok(object(
        "batch/v1",
        "CronJob",
        name,
        options,
        json!({ "spec": {
            "schedule": cron,
            "timeZone": schedule.time_zone_name(),
            "concurrencyPolicy": "Forbid",
            // A run missed by up to an hour (a busy cluster, a controller
            // restart) still starts, once.
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": { "labels": labels(options) },
                "spec": {
                    "backoffLimit": 2,
                    "template": {
                        "metadata": { "labels": labels(options) },
                        "spec": pod.spec(options, container, "Never"),
                    },
                },
            },
        }}),
    ))
}

/// Prints the strategic merge patch that gives a PostgreSQL StatefulSet's
/// pods the `drkit` binary (an init container copies it into an emptyDir)
/// and the config, for `archive_command` and `restore_command`.
pub(crate) fn postgres_patch(config: &Config, image: &str, container: &str, name: &str) -> Outcome {
    let secrets = Secrets::of(config)?;
    let mut volumes = vec![
        json!({ "name": "drkit-bin", "emptyDir": {} }),
        json!({ "name": "drkit-config", "configMap": { "name": format!("{name}-config") } }),
    ];
    let mut mounts = vec![
        json!({ "name": "drkit-bin", "mountPath": BIN_DIR, "readOnly": true }),
        json!({ "name": "drkit-config", "mountPath": CONFIG_DIR, "readOnly": true }),
    ];
    if let Some((volume, files)) = secrets.volume("drkit-secrets", &format!("{name}-secrets")) {
        volumes.push(volume);
        mounts.extend(files);
    }
    let archive_command = format!("{BIN_DIR}/drkit --config {CONFIG_FILE} wal push %p");
    let patch = json!({
        "spec": { "template": { "spec": {
            "initContainers": [{
                "name": "drkit-install",
                "image": image,
                "args": ["kubernetes", "copy-binary", format!("{BIN_DIR}/drkit")],
                "volumeMounts": [{ "name": "drkit-bin", "mountPath": BIN_DIR }],
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": { "drop": ["ALL"] },
                },
            }],
            "containers": [{
                "name": container,
                "env": [{ "name": "DRKIT_CONFIG", "value": CONFIG_FILE }],
                "volumeMounts": mounts,
            }],
            "volumes": volumes,
        }}}
    });
    print!(
        "# Gives a PostgreSQL StatefulSet's pods drkit for archive_command:\n\
         #   drkit kubernetes postgres-patch > drkit-patch.yaml\n\
         #   kubectl patch statefulset <postgres> --type strategic --patch-file drkit-patch.yaml\n\
         # then: ALTER SYSTEM SET archive_command = '{archive_command}';\n---\n{}",
        to_yaml(&patch)
    );
    Ok(())
}

/// Copies this executable to `dest` (mode 0755), atomically: the init
/// container of a PostgreSQL pod.
pub(crate) fn copy_binary(dest: &Path) -> Outcome {
    use std::os::unix::fs::PermissionsExt;
    let me = std::env::current_exe().map_err(|e| Failure::of("finding this executable", &e))?;
    let temp = dest.with_extension("drkit-tmp");
    let copied = std::fs::copy(&me, &temp)
        .and_then(|_| std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o755)))
        .and_then(|()| std::fs::File::open(&temp)?.sync_all())
        .and_then(|()| std::fs::rename(&temp, dest));
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&temp);
        return Err(Failure::of(
            format_args!("copying {} to {}", me.display(), dest.display()),
            &e,
        ));
    }
    Ok(())
}
