//! The azureblob "when a blob is added or modified (properties only)" polling trigger.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::state::Inner;

/// Blobs seen by earlier polls (name -> ETag); `None` before the first poll.
#[derive(Default)]
pub struct Seen(Option<HashMap<String, String>>);

/// Lists the trigger's folder and returns the trigger bodies of new or changed blobs.
pub async fn poll(
    _inner: &Arc<Inner>,
    _wf_key: &str,
    _trigger: &Value,
    _seen: &mut Seen,
) -> Vec<Value> {
    Vec::new()
}
