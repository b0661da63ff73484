//! How a resource backup is stored: an object per file of one tar stream,
//! beside a JSON record of what was and was not taken.
//!
//! Paths are Velero's: `resources/<resource>/namespaces/<namespace>/<name>.json`
//! and `resources/<resource>/cluster/<name>.json`, the resource named as
//! [`ResourceType::name`] names it. Long paths are written as GNU tar
//! writes them, so `tar -x` reads the stream back as files.

use std::io::Read;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::resources::discovery::ResourceType;
use crate::resources::filter::ResourceFilter;

/// The stream of objects.
pub(crate) const OBJECTS_STREAM: &str = "resources.tar";
/// The stream of [`BackupContents`].
pub(crate) const CONTENTS_STREAM: &str = "contents.json";
/// The format of [`BackupContents`] this build writes and reads.
pub(crate) const CONTENTS_FORMAT: u32 = 1;

/// One object of a resource backup: where it was, and itself as the
/// server gave it (its `apiVersion` and `kind` set).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StoredObject {
    /// Its resource, as [`ResourceType::name`] names it.
    pub resource: String,
    /// Its namespace, for a namespaced object.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// The object.
    pub object: Value,
}

impl StoredObject {
    /// Its path in the tar stream.
    pub fn path(&self) -> String {
        match &self.namespace {
            Some(ns) => format!(
                "resources/{}/namespaces/{ns}/{}.json",
                self.resource, self.name
            ),
            None => format!("resources/{}/cluster/{}.json", self.resource, self.name),
        }
    }

    /// `resource namespace/name` (or `resource name`), for messages.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.resource, self.name),
            None => format!("{} {}", self.resource, self.name),
        }
    }
}

/// A resource that was taken, and how many of its objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TakenResource {
    /// [`ResourceType::name`].
    pub resource: String,
    /// Its group version (`apps/v1`).
    pub api_version: String,
    /// Its kind.
    pub kind: String,
    /// Whether its objects live in namespaces.
    pub namespaced: bool,
    /// How many objects were stored.
    pub objects: u64,
}

impl TakenResource {
    pub(crate) fn of(resource: &ResourceType, objects: u64) -> Self {
        Self {
            resource: resource.name(),
            api_version: resource.api.api_version.clone(),
            kind: resource.api.kind.clone(),
            namespaced: resource.namespaced,
            objects,
        }
    }
}

/// Something not in the backup, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeftOut {
    /// A resource (`events`), an object (`pods default/web-5d4f-x2x`) or a
    /// group version (`metrics.k8s.io/v1beta1`).
    pub what: String,
    /// Why.
    pub reason: String,
}

/// The record a resource backup keeps beside its objects: what was taken,
/// what was left out by rule, and what could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupContents {
    /// Its format; see the crate's docs.
    pub format: u32,
    /// The cluster backed up (its kubeconfig context).
    pub cluster: String,
    /// The filter it was taken with.
    pub filter: ResourceFilter,
    /// The resources taken, in the order they were listed.
    pub taken: Vec<TakenResource>,
    /// Resources and objects left out by the filter or by rule.
    pub left_out: Vec<LeftOut>,
    /// What could not be read: group versions whose discovery failed,
    /// resources whose list was refused. Empty in a complete backup.
    pub unreadable: Vec<LeftOut>,
}

impl BackupContents {
    /// How many objects were stored.
    pub fn objects(&self) -> u64 {
        self.taken.iter().map(|t| t.objects).sum()
    }
}

/// The tar stream of `objects`, in their order.
pub(crate) fn write_tar(objects: &[StoredObject], mtime: u64) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for object in objects {
        let mut bytes = serde_json::to_vec(&object.object)?;
        bytes.push(b'\n');
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, object.path(), bytes.as_slice())?;
    }
    tar.into_inner()
}

/// The objects of the tar stream `bytes`, each checked to be an object
/// whose path names it.
///
/// # Errors
/// What is not such a tar stream, as a sentence naming the entry.
pub(crate) fn read_tar(bytes: &[u8]) -> Result<Vec<StoredObject>, String> {
    let mut archive = tar::Archive::new(bytes);
    let mut objects = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| format!("not a tar stream: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("a damaged tar entry: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("an entry without a path: {e}"))?
            .to_string_lossy()
            .into_owned();
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(format!("{path}: not a regular file"));
        }
        // The header's size is a hint, not a promise: at most 1 MiB up front.
        let mut content = Vec::with_capacity(entry.size().min(1 << 20) as usize);
        entry
            .read_to_end(&mut content)
            .map_err(|e| format!("{path}: {e}"))?;
        objects.push(parse_entry(&path, &content)?);
    }
    Ok(objects)
}

/// One entry: its path's resource, namespace and name, checked against
/// the object it holds.
fn parse_entry(path: &str, content: &[u8]) -> Result<StoredObject, String> {
    let bad = |why: &str| format!("{path}: {why}");
    let rest = path
        .strip_prefix("resources/")
        .and_then(|p| p.strip_suffix(".json"))
        .ok_or_else(|| bad("not resources/<resource>/.../<name>.json"))?;
    let parts: Vec<&str> = rest.split('/').collect();
    let (resource, namespace, name) = match parts.as_slice() {
        [resource, "namespaces", namespace, name] => (*resource, Some(*namespace), *name),
        [resource, "cluster", name] => (*resource, None, *name),
        _ => return Err(bad("not resources/<resource>/.../<name>.json")),
    };
    let object: Value =
        serde_json::from_slice(content).map_err(|e| bad(&format!("not JSON: {e}")))?;
    let field = |pointer: &str| object.pointer(pointer).and_then(Value::as_str);
    if field("/apiVersion").is_none() || field("/kind").is_none() {
        return Err(bad("the object has no apiVersion or kind"));
    }
    if field("/metadata/name") != Some(name) || field("/metadata/namespace") != namespace {
        return Err(bad("the object's name or namespace is not its path's"));
    }
    Ok(StoredObject {
        resource: resource.to_owned(),
        namespace: namespace.map(str::to_owned),
        name: name.to_owned(),
        object,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(resource: &str, namespace: Option<&str>, name: &str) -> StoredObject {
        let mut metadata = json!({ "name": name });
        if let Some(ns) = namespace {
            metadata["namespace"] = json!(ns);
        }
        StoredObject {
            resource: resource.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
            object: json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata }),
        }
    }

    #[test]
    fn objects_go_through_tar_and_back_long_names_included() {
        let long = "x".repeat(253);
        let objects = vec![
            object("configmaps", Some("default"), "a"),
            object("rooms.livekit.io", Some("livekit"), &long),
            object("namespaces", None, "default"),
        ];
        let bytes = write_tar(&objects, 1_700_000_000).unwrap();
        assert_eq!(read_tar(&bytes).unwrap(), objects);
        assert_eq!(
            objects[0].path(),
            "resources/configmaps/namespaces/default/a.json"
        );
    }

    #[test]
    fn damage_is_an_error_naming_the_entry() {
        let objects = vec![object("configmaps", Some("default"), "a")];
        let bytes = write_tar(&objects, 0).unwrap();
        // A truncated stream.
        assert!(read_tar(&bytes[..700]).is_err());
        // An object whose content is not its path's.
        let mut moved = objects[0].clone();
        moved.name = "b".into();
        let err = read_tar(&write_tar(&[moved], 0).unwrap()).unwrap_err();
        assert!(err.contains("not its path's"), "{err}");
        // Content that is not JSON.
        let mut broken = bytes.clone();
        let at = broken.windows(4).position(|w| w == b"\"api").unwrap();
        broken[at] = b'!';
        let err = read_tar(&broken).unwrap_err();
        assert!(err.contains("not JSON"), "{err}");
    }
}
