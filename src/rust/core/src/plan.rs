//! Plans: what a command would create, change or leave as it is, with Azure ids.
//! Commands record each decision here whether or not they then write, so a dry run
//! and the real run walk the same code.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Unchanged,
    Delete,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanItem {
    /// What kind of thing: `registry`, `identity`, `role assignment`, `image`, `blob`...
    pub kind: String,
    /// Its Azure resource id, blob path or image reference.
    pub id: String,
    pub action: Action,
    /// Why, briefly (e.g. "AcrPull for the scoring identity").
    pub detail: String,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Plan {
    pub items: Vec<PlanItem>,
}

impl Plan {
    pub fn add(
        &mut self,
        kind: &str,
        id: impl Into<String>,
        action: Action,
        detail: impl Into<String>,
    ) {
        self.items.push(PlanItem {
            kind: kind.to_string(),
            id: id.into(),
            action,
            detail: detail.into(),
        });
    }

    /// True when anything would be written.
    pub fn changes(&self) -> bool {
        self.items.iter().any(|i| i.action != Action::Unchanged)
    }
}
