//! Aggregated discovery (`apidiscovery.k8s.io/v2`): `/api` and `/apis` as one document each,
//! every group with its versions and their resources, for a client whose `Accept` asks for it
//! (kubectl and client-go since 1.30 ask for it first, then for the legacy documents).

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::registry::{self, ResourceType};

/// The group of the aggregated discovery types.
const GROUP: &str = "apidiscovery.k8s.io";

/// The version of the aggregated document a client gets: `v2`, or `v2beta1` (what clients
/// of 1.26 to 1.29 ask for; the same fields under another `apiVersion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Aggregated {
    V2,
    V2Beta1,
}

impl Aggregated {
    fn version(self) -> &'static str {
        match self {
            Aggregated::V2 => "v2",
            Aggregated::V2Beta1 => "v2beta1",
        }
    }

    /// The `Content-Type` of the answer, the media type the client asked for.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Aggregated::V2 => {
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
            }
            Aggregated::V2Beta1 => {
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            }
        }
    }
}

/// What an `Accept` header asks of `/api` or `/apis`: an aggregated document, or `None` for
/// the legacy one. Its media ranges are taken by `q` (1 unless given; 0 is refusal), then in
/// the order given; the first that names either wins. Ranges that name neither (protobuf,
/// YAML, the aggregated types in protobuf) are passed over, as is an empty header.
pub(crate) fn negotiate(accept: &str) -> Option<Aggregated> {
    let mut best: Option<(f32, Option<Aggregated>)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut q = 1.0_f32;
        let (mut g, mut v, mut as_kind) = (None, None, None);
        for parameter in parts {
            let Some((key, value)) = parameter.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match key.trim() {
                "q" => q = value.parse().unwrap_or(0.0),
                "g" => g = Some(value),
                "v" => v = Some(value),
                "as" => as_kind = Some(value),
                _ => {}
            }
        }
        let choice = match (media.as_str(), g, v, as_kind) {
            ("application/json", Some(GROUP), Some("v2"), Some("APIGroupDiscoveryList")) => {
                Some(Aggregated::V2)
            }
            ("application/json", Some(GROUP), Some("v2beta1"), Some("APIGroupDiscoveryList")) => {
                Some(Aggregated::V2Beta1)
            }
            ("application/json" | "application/*" | "*/*", None, None, None) => None,
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(best_q, _)| q > best_q) {
            best = Some((q, choice));
        }
    }
    best.and_then(|(_, choice)| choice)
}

/// `GET /api` (`core`) or `GET /apis` as an `APIGroupDiscoveryList`: the core group (no
/// name), or every other group in the order the legacy `/apis` lists them, custom ones
/// included; each group's versions preferred first, `Current`, with their resources. A
/// group made unavailable has its versions `Stale` and without resources, as the aggregator
/// reports an API service it cannot reach (clients then report that group version and use
/// the others).
pub(crate) fn document(
    format: Aggregated,
    core: bool,
    custom: &[&'static ResourceType],
    unavailable: &BTreeSet<String>,
) -> Value {
    let groups = if core {
        vec![""]
    } else {
        registry::group_names(custom)
    };
    let items: Vec<Value> = groups
        .into_iter()
        .map(|group| {
            let versions = if core {
                vec!["v1"]
            } else {
                registry::versions(group, custom)
            };
            let stale = unavailable.contains(group);
            let versions: Vec<Value> = versions
                .into_iter()
                .map(|version| {
                    if stale {
                        json!({"version": version, "freshness": "Stale"})
                    } else {
                        let resources: Vec<Value> = registry::resources_of(group, version, custom)
                            .map(resource)
                            .collect();
                        json!({"version": version, "resources": resources, "freshness": "Current"})
                    }
                })
                .collect();
            let mut metadata = json!({"creationTimestamp": null});
            if !group.is_empty() {
                metadata["name"] = group.into();
            }
            json!({"metadata": metadata, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("{GROUP}/{}", format.version()),
        "metadata": {},
        "items": items,
    })
}

/// An `APIResourceDiscovery`. As the real server makes it from the legacy entries, a kind of
/// the resource's own group version has an empty group and version in `responseKind`; empty
/// lists are left out.
fn resource(r: &'static ResourceType) -> Value {
    let mut entry = json!({
        "resource": r.plural,
        "responseKind": {"group": "", "version": "", "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs(),
    });
    if !r.short_names.is_empty() {
        entry["shortNames"] = r.short_names.into();
    }
    if !r.categories.is_empty() {
        entry["categories"] = r.categories.into();
    }
    let subresources: Vec<Value> = r
        .subresources()
        .into_iter()
        .map(|sub| {
            let (group, version) = sub.group_version.unwrap_or(("", ""));
            json!({
                "subresource": sub.name,
                "responseKind": {"group": group, "version": version, "kind": sub.kind},
                "verbs": sub.verbs,
            })
        })
        .collect();
    if !subresources.is_empty() {
        entry["subresources"] = subresources.into();
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_the_aggregated_document_by_q_then_order() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,\
                       application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,\
                       application/json";
        assert_eq!(negotiate(kubectl), Some(Aggregated::V2));
        let older = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,\
                     application/json";
        assert_eq!(negotiate(older), Some(Aggregated::V2Beta1));
        let weighted = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;q=0.5, \
                        application/json;q=0.9";
        assert_eq!(negotiate(weighted), None);
        let protobuf = "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;\
                        as=APIGroupDiscoveryList,application/json";
        assert_eq!(negotiate(protobuf), None);
        let refused = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;q=0";
        assert_eq!(negotiate(refused), None);
        for legacy in ["", "application/json", "*/*", "application/json, */*"] {
            assert_eq!(negotiate(legacy), None, "{legacy:?}");
        }
    }
}
