//! What every start, stop and monitor is told about the lease it runs under.

/// The lease a group runs under, given to every action of its resources as
/// `FENCE_EPOCH`, `FENCE_GROUP`, `FENCE_NODE` and `FENCE_NODE_ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnv {
    /// The lease epoch: a shared resource can use it as a fencing token
    /// (refuse any request carrying a smaller one).
    pub epoch: u64,
    /// The resource group's name.
    pub group: String,
    /// This node's name.
    pub node: String,
    /// This node's id.
    pub node_id: u32,
}

impl RunEnv {
    /// The environment variables, as (name, value) pairs.
    pub fn vars(&self) -> Vec<(String, String)> {
        vec![
            ("FENCE_EPOCH".to_owned(), self.epoch.to_string()),
            ("FENCE_GROUP".to_owned(), self.group.clone()),
            ("FENCE_NODE".to_owned(), self.node.clone()),
            ("FENCE_NODE_ID".to_owned(), self.node_id.to_string()),
        ]
    }
}
