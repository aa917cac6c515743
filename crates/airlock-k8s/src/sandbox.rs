//! The kubernetes-sigs agent-sandbox `Sandbox` resource (group `agents.x-k8s.io`, version
//! `v1beta1`), the subset of its published CRD that airlock writes: the pod template, no
//! volume claims, no Service, no expiry (`operatingMode: Running`).
//!
//! Source of the shape: `api/v1beta1/sandbox_types.go` and
//! `k8s/crds/agents.x-k8s.io_sandboxes.yaml` in github.com/kubernetes-sigs/agent-sandbox. The
//! controller creates one Pod named as the Sandbox, from `spec.podTemplate`, owned by it.

use k8s_openapi::api::core::v1::PodSpec;
use kube::CustomResource;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The API group of the agent-sandbox CRDs.
pub const GROUP: &str = "agents.x-k8s.io";
/// The served version airlock writes.
pub const VERSION: &str = "v1beta1";
/// The resource's plural name, as discovery lists it.
pub const PLURAL: &str = "sandboxes";

/// `Sandbox.spec` (`SandboxSpec`): the blueprint (`podTemplate`, `service`) and the operating
/// mode; `volumeClaimTemplates` and the lifecycle fields are left out (airlock's volumes are
/// emptyDirs and the session's end is `airlock rm`).
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "agents.x-k8s.io",
    version = "v1beta1",
    kind = "Sandbox",
    plural = "sandboxes",
    namespaced,
    schema = "disabled",
    derive = "PartialEq",
    status = "SandboxStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct SandboxSpec {
    /// The pod the controller creates (named as the Sandbox).
    pub pod_template: PodTemplate,
    /// Whether the controller creates a headless Service: `false`, the box has no inbound path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<bool>,
    /// `Running` (the controller keeps the pod) or `Suspended`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operating_mode: Option<String>,
}

/// `PodTemplate`: the pod's spec and the labels/annotations it gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodTemplate {
    /// The pod's spec.
    pub spec: PodSpec,
    /// Only labels and annotations are used.
    #[serde(default)]
    pub metadata: PodMetadata,
}

/// `PodMetadata`: the labels and annotations the controller copies to the pod.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodMetadata {
    /// Labels of the pod (the NetworkPolicy selects the pod by them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations of the pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `Sandbox.status`, the part airlock reads: the conditions (`Ready` says why the pod is not
/// up: `DependenciesNotReady`, `ReconcilerError`, …).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SandboxStatus {
    /// The status conditions.
    #[serde(default)]
    pub conditions: Vec<SandboxCondition>,
}

/// One status condition (a `metav1.Condition`, the fields airlock reads).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SandboxCondition {
    /// `Ready`, `Suspended`, `PodScheduled`, `Finished`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False`, `Unknown`.
    pub status: String,
    /// A CamelCase reason.
    #[serde(default)]
    pub reason: Option<String>,
    /// What happened, for people.
    #[serde(default)]
    pub message: Option<String>,
}

impl Sandbox {
    /// The `Ready` condition's reason and message when it is not `True`.
    pub fn not_ready(&self) -> Option<String> {
        let c = self
            .status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready" && c.status != "True")?;
        Some(format!(
            "{}: {}",
            c.reason.as_deref().unwrap_or("NotReady"),
            c.message.as_deref().unwrap_or("")
        ))
    }
}
