//! User-assigned managed identities (`Microsoft.ManagedIdentity`) and role assignments
//! (`Microsoft.Authorization`): how scoring containers reach the registry and Blob
//! Storage without any password or key.

use crate::arm::{api, ArmClient};
use crate::error::Result;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Built-in role definition ids (the same in every tenant).
pub mod roles {
    pub const ACR_PULL: &str = "7f951dda-4ed3-4680-a7ca-43fe172d538d";
    pub const STORAGE_BLOB_DATA_CONTRIBUTOR: &str = "ba92f5b4-2d11-453d-a403-e96b0029c9fe";
}

#[derive(Debug, Clone, Serialize)]
pub struct Identity {
    pub id: String,
    pub name: String,
    pub principal_id: String,
    pub client_id: String,
}

pub fn identity_path(subscription: &str, resource_group: &str, name: &str) -> String {
    format!(
        "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    )
}

fn identity_from(v: &Value) -> Result<Identity> {
    let field = |p: &str| crate::arm::string_field(v, p, "identity");
    Ok(Identity {
        id: field("/id")?,
        name: field("/name")?,
        principal_id: field("/properties/principalId")?,
        client_id: field("/properties/clientId")?,
    })
}

pub async fn get_identity(arm: &ArmClient, path: &str) -> Result<Option<Identity>> {
    match arm.get_opt(path, api::MANAGED_IDENTITY).await? {
        Some(v) => identity_from(&v).map(Some),
        None => Ok(None),
    }
}

pub async fn create_identity(
    arm: &ArmClient,
    path: &str,
    location: &str,
    tags: &BTreeMap<String, String>,
) -> Result<Identity> {
    let v = arm
        .put(
            path,
            api::MANAGED_IDENTITY,
            &json!({"location": location, "tags": tags}),
        )
        .await?;
    identity_from(&v)
}

/// A role assignment's name is derived from what it grants, so creating it twice is
/// the same PUT (Azure refuses a second assignment of one role to one principal).
pub fn assignment_name(scope: &str, role: &str, principal_id: &str) -> String {
    let digest = Sha256::digest(
        format!(
            "{}|{}|{}",
            scope.to_ascii_lowercase(),
            role.to_ascii_lowercase(),
            principal_id.to_ascii_lowercase()
        )
        .as_bytes(),
    );
    let mut b: [u8; 16] = digest[..16].try_into().unwrap_or([0; 16]);
    b[6] = (b[6] & 0x0f) | 0x50; // a name-based (v5-style) GUID
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn role_definition_id(subscription: &str, role: &str) -> String {
    format!(
        "/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{role}"
    )
}

/// Whether `principal_id` holds `role` at `scope` (or above it).
pub async fn has_role(
    arm: &ArmClient,
    scope: &str,
    role: &str,
    principal_id: &str,
) -> Result<bool> {
    let path = format!(
        "{scope}/providers/Microsoft.Authorization/roleAssignments?$filter=principalId%20eq%20'{principal_id}'"
    );
    let v = arm.get(&path, api::AUTHORIZATION).await?;
    Ok(v["value"].as_array().is_some_and(|list| {
        list.iter().any(|a| {
            a["properties"]["roleDefinitionId"]
                .as_str()
                .is_some_and(|d| d.to_ascii_lowercase().ends_with(role))
        })
    }))
}

/// Grants `role` at `scope` to a service principal. Returns the assignment id.
pub async fn assign_role(
    arm: &ArmClient,
    subscription: &str,
    scope: &str,
    role: &str,
    principal_id: &str,
) -> Result<String> {
    let name = assignment_name(scope, role, principal_id);
    let path = format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}");
    let body = json!({"properties": {
        "roleDefinitionId": role_definition_id(subscription, role),
        "principalId": principal_id,
        // Set, so a just-created identity is not refused while it replicates.
        "principalType": "ServicePrincipal",
    }});
    match arm.put(&path, api::AUTHORIZATION, &body).await {
        Ok(_) => Ok(path),
        // Someone (or an older run) granted it under another name: that is the goal.
        Err(e) if e.code.as_deref() == Some("RoleAssignmentExists") => Ok(path),
        Err(e) => Err(e.context(format!("granting role {role} at {scope}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_names_are_stable_guids() {
        let a = assignment_name("/subscriptions/s/rg", roles::ACR_PULL, "P");
        assert_eq!(
            a,
            assignment_name("/SUBSCRIPTIONS/s/RG", roles::ACR_PULL, "p")
        );
        assert_ne!(
            a,
            assignment_name(
                "/subscriptions/s/rg",
                roles::STORAGE_BLOB_DATA_CONTRIBUTOR,
                "p"
            )
        );
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "5");
    }
}
