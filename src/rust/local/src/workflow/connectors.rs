//! Managed connectors the engine speaks: the shapes of their operations.

use serde_json::Value;

use super::expr::{parse_template, Expr, Segment, Template};

/// The `$connections` key named by `@parameters('$connections')['KEY']['connectionId']`.
pub fn connection_key(expr: &str) -> Option<String> {
    let Ok(Template::Expr(e)) = parse_template(expr) else {
        return None;
    };
    let Expr::Index { target, key, .. } = e else {
        return None;
    };
    if *key != Expr::Lit(Value::String("connectionId".into())) {
        return None;
    }
    let Expr::Index { target, key, .. } = *target else {
        return None;
    };
    let Expr::Lit(Value::String(name)) = *key else {
        return None;
    };
    match *target {
        Expr::Call("parameters", args)
            if args.first() == Some(&Expr::Lit(Value::String("$connections".into()))) =>
        {
            Some(name)
        }
        _ => None,
    }
}

/// Path segments of a definition path, each `@{...}` standing as `None`.
fn shape(path: &str) -> Option<Vec<Option<String>>> {
    const HOLE: char = '\u{0}';
    let text = match parse_template(path).ok()? {
        Template::Literal(t) => t,
        Template::Expr(_) => return None,
        Template::Interp(segs) => segs
            .into_iter()
            .map(|s| match s {
                Segment::Text(t) => t,
                Segment::Expr(_) => HOLE.to_string(),
            })
            .collect(),
    };
    let rest = text.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|s| {
                if s.contains(HOLE) {
                    None
                } else {
                    Some(s.to_ascii_lowercase())
                }
            })
            .collect(),
    )
}

fn matches(shape: &[Option<String>], pattern: &[&str]) -> bool {
    shape.len() == pattern.len()
        && shape.iter().zip(pattern).all(|(s, p)| match s {
            // Expressions and literal names both fill a name slot.
            _ if *p == "*" => true,
            Some(s) => s == p,
            None => false,
        })
}

/// Operations of the `aci` connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AciOperation {
    CreateOrUpdate,
    Get,
    Delete,
    Logs,
}

const GROUP: &[&str] = &[
    "subscriptions",
    "*",
    "resourcegroups",
    "*",
    "providers",
    "microsoft.containerinstance",
    "containergroups",
    "*",
];

/// The aci operation of a method and a path (template or evaluated).
pub fn aci_operation(method: &str, path: &str) -> Option<AciOperation> {
    let s = shape(path)?;
    let method = method.to_ascii_lowercase();
    if matches(&s, GROUP) {
        return match method.as_str() {
            "put" => Some(AciOperation::CreateOrUpdate),
            "get" => Some(AciOperation::Get),
            "delete" => Some(AciOperation::Delete),
            _ => None,
        };
    }
    let logs: Vec<&str> = GROUP
        .iter()
        .copied()
        .chain(["containers", "*", "logs"])
        .collect();
    (matches(&s, &logs) && method == "get").then_some(AciOperation::Logs)
}

/// True for the azureblob polling trigger path
/// `/v2/datasets/{dataset}/triggers/batch/onupdatedfile` (or its v1 form
/// `/datasets/default/...`).
pub fn blob_trigger_account(path: &str) -> Option<()> {
    let s = shape(path)?;
    let v2 = ["v2", "datasets", "*", "triggers", "batch", "onupdatedfile"];
    let v1 = ["datasets", "*", "triggers", "batch", "onupdatedfile"];
    (matches(&s, &v2) || matches(&s, &v1)).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_keys() {
        assert_eq!(
            connection_key("@parameters('$connections')['aci']['connectionId']").as_deref(),
            Some("aci")
        );
        assert_eq!(
            connection_key("@parameters('x')['aci']['connectionId']"),
            None
        );
        assert_eq!(connection_key("aci"), None);
    }

    #[test]
    fn aci_paths() {
        let group = "/subscriptions/@{encodeURIComponent('s')}/resourceGroups/@{encodeURIComponent('rg')}/providers/Microsoft.ContainerInstance/containerGroups/@{encodeURIComponent(concat('job-', utcNow('yyyyMMdd')))}";
        assert_eq!(
            aci_operation("put", group),
            Some(AciOperation::CreateOrUpdate)
        );
        assert_eq!(aci_operation("GET", group), Some(AciOperation::Get));
        assert_eq!(aci_operation("delete", group), Some(AciOperation::Delete));
        assert_eq!(aci_operation("post", group), None);
        let logs = format!("{group}/containers/@{{encodeURIComponent('job')}}/logs");
        assert_eq!(aci_operation("get", &logs), Some(AciOperation::Logs));
        assert_eq!(aci_operation("get", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/g"), Some(AciOperation::Get));
        assert_eq!(
            aci_operation("get", "/subscriptions/s/resourceGroups/rg"),
            None
        );
        assert!(blob_trigger_account("/v2/datasets/@{encodeURIComponent(encodeURIComponent('AccountNameFromSettings'))}/triggers/batch/onupdatedfile").is_some());
        assert!(blob_trigger_account("/v2/datasets/x/triggers/onupdatedfile").is_none());
    }
}
