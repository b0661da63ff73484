//! The shapes of the built-in kinds, as far as the OpenAPI documents describe them: which
//! fields an object has (so that `fieldValidation=Strict` can refuse the others), which lists
//! a strategic merge patch merges by key (as `patch::merge_key` merges them), and enough
//! structure for kubectl to compute its strategic merge patches from the documents.
//!
//! A [`Shape::Struct`] is closed: its fields are those of the Kubernetes 1.32 type. Where a
//! type is large and rarely written by hand (a pod's `status`, the rarer volume sources,
//! `topologySpreadConstraints` items) it is [`Shape::Free`]: anything goes, and nothing under
//! it is checked.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

/// The shape of a value.
#[derive(Debug)]
pub(crate) enum Shape {
    /// A scalar of an OpenAPI type: `string`, `integer`, `boolean`.
    Scalar(&'static str),
    /// An integer or a string (a port by number or name, a percentage).
    IntOrString,
    /// Anything: an object whose members are not described nor checked.
    Free,
    /// An object whose members all have one shape (labels, a ConfigMap's `data`).
    Map(&'static Shape),
    /// An object with these fields and no others.
    Struct(&'static [Field]),
    /// A list a patch replaces whole.
    List(&'static Shape),
    /// A list a strategic merge patch merges item by item, by this key.
    Keyed(&'static str, &'static Shape),
}

/// A field of a [`Shape::Struct`].
#[derive(Debug)]
pub(crate) struct Field(pub(crate) &'static str, pub(crate) Shape);

const S: Shape = Shape::Scalar("string");
const I: Shape = Shape::Scalar("integer");
const B: Shape = Shape::Scalar("boolean");
const IOS: Shape = Shape::IntOrString;
const FREE: Shape = Shape::Free;
const MAP: Shape = Shape::Map(&S);
/// Resource quantities: `cpu: 1`, `memory: 64Mi`.
const QUANTITIES: Shape = Shape::Map(&IOS);
const STRINGS: Shape = Shape::List(&S);
const FREE_LIST: Shape = Shape::List(&FREE);

const OWNER_REFERENCE: &[Field] = &[
    Field("apiVersion", S),
    Field("kind", S),
    Field("name", S),
    Field("uid", S),
    Field("controller", B),
    Field("blockOwnerDeletion", B),
];

pub(crate) const OBJECT_META: Shape = Shape::Struct(&[
    Field("name", S),
    Field("generateName", S),
    Field("namespace", S),
    Field("selfLink", S),
    Field("uid", S),
    Field("resourceVersion", S),
    Field("generation", I),
    Field("creationTimestamp", S),
    Field("deletionTimestamp", S),
    Field("deletionGracePeriodSeconds", I),
    Field("labels", MAP),
    Field("annotations", MAP),
    Field(
        "ownerReferences",
        Shape::List(&Shape::Struct(OWNER_REFERENCE)),
    ),
    Field("finalizers", STRINGS),
    Field("managedFields", FREE_LIST),
]);

const LABEL_SELECTOR: Shape = Shape::Struct(&[
    Field("matchLabels", MAP),
    Field(
        "matchExpressions",
        Shape::List(&Shape::Struct(&[
            Field("key", S),
            Field("operator", S),
            Field("values", STRINGS),
        ])),
    ),
]);

const NAME_REF: Shape = Shape::Struct(&[Field("name", S)]);
const KEY_REF: Shape = Shape::Struct(&[Field("name", S), Field("key", S), Field("optional", B)]);
const SOURCE_REF: Shape = Shape::Struct(&[Field("name", S), Field("optional", B)]);

const ENV_VAR: Shape = Shape::Struct(&[
    Field("name", S),
    Field("value", S),
    Field(
        "valueFrom",
        Shape::Struct(&[
            Field(
                "fieldRef",
                Shape::Struct(&[Field("apiVersion", S), Field("fieldPath", S)]),
            ),
            Field(
                "resourceFieldRef",
                Shape::Struct(&[
                    Field("containerName", S),
                    Field("resource", S),
                    Field("divisor", IOS),
                ]),
            ),
            Field("configMapKeyRef", KEY_REF),
            Field("secretKeyRef", KEY_REF),
        ]),
    ),
]);

const RESOURCES: Shape = Shape::Struct(&[
    Field("limits", QUANTITIES),
    Field("requests", QUANTITIES),
    Field(
        "claims",
        Shape::List(&Shape::Struct(&[Field("name", S), Field("request", S)])),
    ),
]);

const EXEC: Shape = Shape::Struct(&[Field("command", STRINGS)]);
const HTTP_GET: Shape = Shape::Struct(&[
    Field("path", S),
    Field("port", IOS),
    Field("host", S),
    Field("scheme", S),
    Field(
        "httpHeaders",
        Shape::List(&Shape::Struct(&[Field("name", S), Field("value", S)])),
    ),
]);
const TCP_SOCKET: Shape = Shape::Struct(&[Field("port", IOS), Field("host", S)]);

const PROBE: Shape = Shape::Struct(&[
    Field("exec", EXEC),
    Field("httpGet", HTTP_GET),
    Field("tcpSocket", TCP_SOCKET),
    Field(
        "grpc",
        Shape::Struct(&[Field("port", I), Field("service", S)]),
    ),
    Field("initialDelaySeconds", I),
    Field("timeoutSeconds", I),
    Field("periodSeconds", I),
    Field("successThreshold", I),
    Field("failureThreshold", I),
    Field("terminationGracePeriodSeconds", I),
]);

const HANDLER: Shape = Shape::Struct(&[
    Field("exec", EXEC),
    Field("httpGet", HTTP_GET),
    Field("tcpSocket", TCP_SOCKET),
    Field("sleep", Shape::Struct(&[Field("seconds", I)])),
]);

const SE_LINUX: Shape = Shape::Struct(&[
    Field("user", S),
    Field("role", S),
    Field("type", S),
    Field("level", S),
]);
const WINDOWS: Shape = Shape::Struct(&[
    Field("gmsaCredentialSpecName", S),
    Field("gmsaCredentialSpec", S),
    Field("runAsUserName", S),
    Field("hostProcess", B),
]);
const PROFILE: Shape = Shape::Struct(&[Field("type", S), Field("localhostProfile", S)]);

const SECURITY_CONTEXT: Shape = Shape::Struct(&[
    Field(
        "capabilities",
        Shape::Struct(&[Field("add", STRINGS), Field("drop", STRINGS)]),
    ),
    Field("privileged", B),
    Field("seLinuxOptions", SE_LINUX),
    Field("windowsOptions", WINDOWS),
    Field("runAsUser", I),
    Field("runAsGroup", I),
    Field("runAsNonRoot", B),
    Field("readOnlyRootFilesystem", B),
    Field("allowPrivilegeEscalation", B),
    Field("procMount", S),
    Field("seccompProfile", PROFILE),
    Field("appArmorProfile", PROFILE),
]);

const POD_SECURITY_CONTEXT: Shape = Shape::Struct(&[
    Field("seLinuxOptions", SE_LINUX),
    Field("windowsOptions", WINDOWS),
    Field("runAsUser", I),
    Field("runAsGroup", I),
    Field("runAsNonRoot", B),
    Field("supplementalGroups", Shape::List(&I)),
    Field("supplementalGroupsPolicy", S),
    Field("fsGroup", I),
    Field(
        "sysctls",
        Shape::List(&Shape::Struct(&[Field("name", S), Field("value", S)])),
    ),
    Field("fsGroupChangePolicy", S),
    Field("seccompProfile", PROFILE),
    Field("appArmorProfile", PROFILE),
    Field("seLinuxChangePolicy", S),
]);

const CONTAINER: Shape = Shape::Struct(&[
    Field("name", S),
    Field("image", S),
    Field("command", STRINGS),
    Field("args", STRINGS),
    Field("workingDir", S),
    Field(
        "ports",
        Shape::Keyed(
            "containerPort",
            &Shape::Struct(&[
                Field("name", S),
                Field("hostPort", I),
                Field("containerPort", I),
                Field("protocol", S),
                Field("hostIP", S),
            ]),
        ),
    ),
    Field(
        "envFrom",
        Shape::List(&Shape::Struct(&[
            Field("prefix", S),
            Field("configMapRef", SOURCE_REF),
            Field("secretRef", SOURCE_REF),
        ])),
    ),
    Field("env", Shape::Keyed("name", &ENV_VAR)),
    Field("resources", RESOURCES),
    Field(
        "resizePolicy",
        Shape::List(&Shape::Struct(&[
            Field("resourceName", S),
            Field("restartPolicy", S),
        ])),
    ),
    Field("restartPolicy", S),
    Field(
        "volumeMounts",
        Shape::Keyed(
            "mountPath",
            &Shape::Struct(&[
                Field("name", S),
                Field("readOnly", B),
                Field("recursiveReadOnly", S),
                Field("mountPath", S),
                Field("subPath", S),
                Field("mountPropagation", S),
                Field("subPathExpr", S),
            ]),
        ),
    ),
    Field(
        "volumeDevices",
        Shape::List(&Shape::Struct(&[Field("name", S), Field("devicePath", S)])),
    ),
    Field("livenessProbe", PROBE),
    Field("readinessProbe", PROBE),
    Field("startupProbe", PROBE),
    Field(
        "lifecycle",
        Shape::Struct(&[Field("postStart", HANDLER), Field("preStop", HANDLER)]),
    ),
    Field("terminationMessagePath", S),
    Field("terminationMessagePolicy", S),
    Field("imagePullPolicy", S),
    Field("securityContext", SECURITY_CONTEXT),
    Field("stdin", B),
    Field("stdinOnce", B),
    Field("tty", B),
]);

/// The files of a `configMap` or `secret` volume.
const ITEMS: Shape = Shape::List(&Shape::Struct(&[
    Field("key", S),
    Field("path", S),
    Field("mode", I),
]));

const VOLUME: Shape = Shape::Struct(&[
    Field("name", S),
    Field(
        "hostPath",
        Shape::Struct(&[Field("path", S), Field("type", S)]),
    ),
    Field(
        "emptyDir",
        Shape::Struct(&[Field("medium", S), Field("sizeLimit", IOS)]),
    ),
    Field(
        "secret",
        Shape::Struct(&[
            Field("secretName", S),
            Field("items", ITEMS),
            Field("defaultMode", I),
            Field("optional", B),
        ]),
    ),
    Field(
        "configMap",
        Shape::Struct(&[
            Field("name", S),
            Field("items", ITEMS),
            Field("defaultMode", I),
            Field("optional", B),
        ]),
    ),
    Field(
        "persistentVolumeClaim",
        Shape::Struct(&[Field("claimName", S), Field("readOnly", B)]),
    ),
    Field(
        "nfs",
        Shape::Struct(&[Field("server", S), Field("path", S), Field("readOnly", B)]),
    ),
    Field(
        "projected",
        Shape::Struct(&[Field("sources", FREE_LIST), Field("defaultMode", I)]),
    ),
    Field(
        "downwardAPI",
        Shape::Struct(&[Field("items", FREE_LIST), Field("defaultMode", I)]),
    ),
    Field(
        "csi",
        Shape::Struct(&[
            Field("driver", S),
            Field("readOnly", B),
            Field("fsType", S),
            Field("volumeAttributes", MAP),
            Field("nodePublishSecretRef", NAME_REF),
        ]),
    ),
    Field(
        "ephemeral",
        Shape::Struct(&[Field("volumeClaimTemplate", FREE)]),
    ),
    Field(
        "image",
        Shape::Struct(&[Field("reference", S), Field("pullPolicy", S)]),
    ),
    // The other volume sources, in-tree drivers mostly gone from clusters.
    Field("gcePersistentDisk", FREE),
    Field("awsElasticBlockStore", FREE),
    Field("gitRepo", FREE),
    Field("iscsi", FREE),
    Field("glusterfs", FREE),
    Field("rbd", FREE),
    Field("flexVolume", FREE),
    Field("cinder", FREE),
    Field("cephfs", FREE),
    Field("flocker", FREE),
    Field("fc", FREE),
    Field("azureFile", FREE),
    Field("vsphereVolume", FREE),
    Field("quobyte", FREE),
    Field("azureDisk", FREE),
    Field("photonPersistentDisk", FREE),
    Field("portworxVolume", FREE),
    Field("scaleIO", FREE),
    Field("storageos", FREE),
]);

const AFFINITY_TERMS: Shape = Shape::Struct(&[
    Field("requiredDuringSchedulingIgnoredDuringExecution", FREE_LIST),
    Field("preferredDuringSchedulingIgnoredDuringExecution", FREE_LIST),
]);

const AFFINITY: Shape = Shape::Struct(&[
    Field(
        "nodeAffinity",
        Shape::Struct(&[
            Field(
                "requiredDuringSchedulingIgnoredDuringExecution",
                Shape::Struct(&[Field("nodeSelectorTerms", FREE_LIST)]),
            ),
            Field("preferredDuringSchedulingIgnoredDuringExecution", FREE_LIST),
        ]),
    ),
    Field("podAffinity", AFFINITY_TERMS),
    Field("podAntiAffinity", AFFINITY_TERMS),
]);

const POD_SPEC: Shape = Shape::Struct(&[
    Field("volumes", Shape::Keyed("name", &VOLUME)),
    Field("initContainers", Shape::Keyed("name", &CONTAINER)),
    Field("containers", Shape::Keyed("name", &CONTAINER)),
    Field("ephemeralContainers", Shape::Keyed("name", &FREE)),
    Field("restartPolicy", S),
    Field("terminationGracePeriodSeconds", I),
    Field("activeDeadlineSeconds", I),
    Field("dnsPolicy", S),
    Field("nodeSelector", MAP),
    Field("serviceAccountName", S),
    Field("serviceAccount", S),
    Field("automountServiceAccountToken", B),
    Field("nodeName", S),
    Field("hostNetwork", B),
    Field("hostPID", B),
    Field("hostIPC", B),
    Field("shareProcessNamespace", B),
    Field("securityContext", POD_SECURITY_CONTEXT),
    Field("imagePullSecrets", Shape::Keyed("name", &NAME_REF)),
    Field("hostname", S),
    Field("subdomain", S),
    Field("affinity", AFFINITY),
    Field("schedulerName", S),
    Field(
        "tolerations",
        Shape::List(&Shape::Struct(&[
            Field("key", S),
            Field("operator", S),
            Field("value", S),
            Field("effect", S),
            Field("tolerationSeconds", I),
        ])),
    ),
    Field(
        "hostAliases",
        Shape::List(&Shape::Struct(&[
            Field("ip", S),
            Field("hostnames", STRINGS),
        ])),
    ),
    Field("priorityClassName", S),
    Field("priority", I),
    Field(
        "dnsConfig",
        Shape::Struct(&[
            Field("nameservers", STRINGS),
            Field("searches", STRINGS),
            Field(
                "options",
                Shape::List(&Shape::Struct(&[Field("name", S), Field("value", S)])),
            ),
        ]),
    ),
    Field(
        "readinessGates",
        Shape::List(&Shape::Struct(&[Field("conditionType", S)])),
    ),
    Field("runtimeClassName", S),
    Field("enableServiceLinks", B),
    Field("preemptionPolicy", S),
    Field("overhead", QUANTITIES),
    Field("topologySpreadConstraints", FREE_LIST),
    Field("setHostnameAsFQDN", B),
    Field("os", Shape::Struct(&[Field("name", S)])),
    Field("hostUsers", B),
    Field("schedulingGates", Shape::List(&NAME_REF)),
    Field("resourceClaims", FREE_LIST),
    Field("resources", RESOURCES),
]);

const POD_TEMPLATE: Shape =
    Shape::Struct(&[Field("metadata", OBJECT_META), Field("spec", POD_SPEC)]);

const ROLLING: Shape = Shape::Struct(&[Field("maxUnavailable", IOS), Field("maxSurge", IOS)]);

const DEPLOYMENT_SPEC: Shape = Shape::Struct(&[
    Field("replicas", I),
    Field("selector", LABEL_SELECTOR),
    Field("template", POD_TEMPLATE),
    Field(
        "strategy",
        Shape::Struct(&[Field("type", S), Field("rollingUpdate", ROLLING)]),
    ),
    Field("minReadySeconds", I),
    Field("revisionHistoryLimit", I),
    Field("paused", B),
    Field("progressDeadlineSeconds", I),
]);

const REPLICA_SET_SPEC: Shape = Shape::Struct(&[
    Field("replicas", I),
    Field("minReadySeconds", I),
    Field("selector", LABEL_SELECTOR),
    Field("template", POD_TEMPLATE),
]);

const STATEFUL_SET_SPEC: Shape = Shape::Struct(&[
    Field("replicas", I),
    Field("selector", LABEL_SELECTOR),
    Field("template", POD_TEMPLATE),
    Field("volumeClaimTemplates", FREE_LIST),
    Field("serviceName", S),
    Field("podManagementPolicy", S),
    Field(
        "updateStrategy",
        Shape::Struct(&[
            Field("type", S),
            Field(
                "rollingUpdate",
                Shape::Struct(&[Field("partition", I), Field("maxUnavailable", IOS)]),
            ),
        ]),
    ),
    Field("revisionHistoryLimit", I),
    Field("minReadySeconds", I),
    Field(
        "persistentVolumeClaimRetentionPolicy",
        Shape::Struct(&[Field("whenDeleted", S), Field("whenScaled", S)]),
    ),
    Field("ordinals", Shape::Struct(&[Field("start", I)])),
]);

const DAEMON_SET_SPEC: Shape = Shape::Struct(&[
    Field("selector", LABEL_SELECTOR),
    Field("template", POD_TEMPLATE),
    Field(
        "updateStrategy",
        Shape::Struct(&[Field("type", S), Field("rollingUpdate", ROLLING)]),
    ),
    Field("minReadySeconds", I),
    Field("revisionHistoryLimit", I),
]);

const SERVICE_SPEC: Shape = Shape::Struct(&[
    Field(
        "ports",
        Shape::Keyed(
            "port",
            &Shape::Struct(&[
                Field("name", S),
                Field("protocol", S),
                Field("appProtocol", S),
                Field("port", I),
                Field("targetPort", IOS),
                Field("nodePort", I),
            ]),
        ),
    ),
    Field("selector", MAP),
    Field("clusterIP", S),
    Field("clusterIPs", STRINGS),
    Field("type", S),
    Field("externalIPs", STRINGS),
    Field("sessionAffinity", S),
    Field("loadBalancerIP", S),
    Field("loadBalancerSourceRanges", STRINGS),
    Field("externalName", S),
    Field("externalTrafficPolicy", S),
    Field("healthCheckNodePort", I),
    Field("publishNotReadyAddresses", B),
    Field("sessionAffinityConfig", FREE),
    Field("ipFamilies", STRINGS),
    Field("ipFamilyPolicy", S),
    Field("allocateLoadBalancerNodePorts", B),
    Field("loadBalancerClass", S),
    Field("internalTrafficPolicy", S),
    Field("trafficDistribution", S),
]);

const PVC_SPEC: Shape = Shape::Struct(&[
    Field("accessModes", STRINGS),
    Field("selector", LABEL_SELECTOR),
    Field(
        "resources",
        Shape::Struct(&[Field("limits", QUANTITIES), Field("requests", QUANTITIES)]),
    ),
    Field("volumeName", S),
    Field("storageClassName", S),
    Field("volumeMode", S),
    Field("dataSource", FREE),
    Field("dataSourceRef", FREE),
    Field("volumeAttributesClassName", S),
]);

const NODE_SPEC: Shape = Shape::Struct(&[
    Field("podCIDR", S),
    Field("podCIDRs", STRINGS),
    Field("providerID", S),
    Field("unschedulable", B),
    Field(
        "taints",
        Shape::List(&Shape::Struct(&[
            Field("key", S),
            Field("value", S),
            Field("effect", S),
            Field("timeAdded", S),
        ])),
    ),
    Field("configSource", FREE),
    Field("externalID", S),
]);

const LEASE_SPEC: Shape = Shape::Struct(&[
    Field("holderIdentity", S),
    Field("leaseDurationSeconds", I),
    Field("acquireTime", S),
    Field("renewTime", S),
    Field("leaseTransitions", I),
    Field("strategy", S),
    Field("preferredHolder", S),
]);

const PDB_SPEC: Shape = Shape::Struct(&[
    Field("minAvailable", IOS),
    Field("selector", LABEL_SELECTOR),
    Field("maxUnavailable", IOS),
    Field("unhealthyPodEvictionPolicy", S),
]);

const NETWORK_POLICY_SPEC: Shape = Shape::Struct(&[
    Field("podSelector", LABEL_SELECTOR),
    Field("ingress", FREE_LIST),
    Field("egress", FREE_LIST),
    Field("policyTypes", STRINGS),
]);

const CRD_SPEC: Shape = Shape::Struct(&[
    Field("group", S),
    Field(
        "names",
        Shape::Struct(&[
            Field("plural", S),
            Field("singular", S),
            Field("shortNames", STRINGS),
            Field("kind", S),
            Field("listKind", S),
            Field("categories", STRINGS),
        ]),
    ),
    Field("scope", S),
    // Each version's schema is a JSONSchemaProps, recursive and open-ended.
    Field("versions", FREE_LIST),
    Field(
        "conversion",
        Shape::Struct(&[Field("strategy", S), Field("webhook", FREE)]),
    ),
    Field("preserveUnknownFields", B),
]);

/// The fields of a built-in kind besides `apiVersion`, `kind` and `metadata`.
fn kind_fields(kind: &str) -> &'static [Field] {
    match kind {
        "ConfigMap" => &[
            Field("data", MAP),
            Field("binaryData", MAP),
            Field("immutable", B),
        ],
        "Secret" => &[
            Field("data", MAP),
            Field("stringData", MAP),
            Field("type", S),
            Field("immutable", B),
        ],
        "Namespace" => &[
            Field("spec", Shape::Struct(&[Field("finalizers", STRINGS)])),
            Field("status", FREE),
        ],
        "Node" => &[Field("spec", NODE_SPEC), Field("status", FREE)],
        "PersistentVolumeClaim" => &[Field("spec", PVC_SPEC), Field("status", FREE)],
        "Pod" => &[Field("spec", POD_SPEC), Field("status", FREE)],
        "ServiceAccount" => &[
            Field("secrets", FREE_LIST),
            Field("imagePullSecrets", Shape::Keyed("name", &NAME_REF)),
            Field("automountServiceAccountToken", B),
        ],
        "Service" => &[Field("spec", SERVICE_SPEC), Field("status", FREE)],
        "CustomResourceDefinition" => &[Field("spec", CRD_SPEC), Field("status", FREE)],
        "DaemonSet" => &[Field("spec", DAEMON_SET_SPEC), Field("status", FREE)],
        "Deployment" => &[Field("spec", DEPLOYMENT_SPEC), Field("status", FREE)],
        "ReplicaSet" => &[Field("spec", REPLICA_SET_SPEC), Field("status", FREE)],
        "StatefulSet" => &[Field("spec", STATEFUL_SET_SPEC), Field("status", FREE)],
        "Lease" => &[Field("spec", LEASE_SPEC)],
        "PodDisruptionBudget" => &[Field("spec", PDB_SPEC), Field("status", FREE)],
        "NetworkPolicy" => &[Field("spec", NETWORK_POLICY_SPEC)],
        // Stored as given, no controller acts on them: their specs are open.
        "Job" | "CronJob" => &[Field("spec", FREE), Field("status", FREE)],
        "Role" | "ClusterRole" => &[Field("rules", FREE_LIST), Field("aggregationRule", FREE)],
        "RoleBinding" | "ClusterRoleBinding" => {
            &[Field("subjects", FREE_LIST), Field("roleRef", FREE)]
        }
        _ => &[],
    }
}

/// A shape as an OpenAPI v3 schema, every type inline.
pub(crate) fn to_schema(shape: &Shape) -> Value {
    match shape {
        Shape::Scalar(kind) => json!({"type": kind}),
        Shape::IntOrString => json!({"x-kubernetes-int-or-string": true}),
        Shape::Free => json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        Shape::Map(values) => json!({"type": "object", "additionalProperties": to_schema(values)}),
        Shape::Struct(fields) => struct_schema(fields.iter()),
        Shape::List(items) => json!({
            "type": "array",
            "items": to_schema(items),
            "x-kubernetes-list-type": "atomic",
        }),
        Shape::Keyed(key, items) => json!({
            "type": "array",
            "items": to_schema(items),
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": [key],
            "x-kubernetes-patch-merge-key": key,
            "x-kubernetes-patch-strategy": "merge",
        }),
    }
}

fn struct_schema<'a>(fields: impl Iterator<Item = &'a Field>) -> Value {
    let properties: Map<String, Value> = fields
        .map(|Field(name, shape)| ((*name).to_owned(), to_schema(shape)))
        .collect();
    json!({"type": "object", "properties": properties})
}

/// The schema of a built-in kind: `apiVersion`, `kind`, `metadata` and the kind's own fields.
pub(crate) fn kind_schema(kind: &str) -> Value {
    let common = [
        Field("apiVersion", S),
        Field("kind", S),
        Field("metadata", OBJECT_META),
    ];
    struct_schema(common.iter().chain(kind_fields(kind)))
}

/// [`kind_schema`] of a built-in kind, built once: every write checks its
/// object against it (`fieldValidation`), and building the schema of a
/// Deployment anew for each took most of a create's time.
pub(crate) fn cached_kind_schema(kind: &str) -> &'static Value {
    static CACHE: OnceLock<HashMap<&'static str, Value>> = OnceLock::new();
    static NONE: OnceLock<Value> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            crate::registry::RESOURCES
                .iter()
                .map(|r| (r.kind, kind_schema(r.kind)))
                .collect()
        })
        .get(kind)
        .unwrap_or_else(|| NONE.get_or_init(|| kind_schema("")))
}
