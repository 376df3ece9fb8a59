//! Key names under `/<namespace>/<scope>/` (patroni.md §2.1).

/// The key names of one scope. `namespace` is normalised to start and end with `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(namespace: &str, scope: &str) -> Self {
        let namespace = namespace.trim_matches('/');
        let prefix = if namespace.is_empty() {
            format!("/{scope}/")
        } else {
            format!("/{namespace}/{scope}/")
        };
        Self { prefix }
    }

    /// `/<namespace>/<scope>/`: every key of the scope starts with it.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn leader(&self) -> String {
        format!("{}leader", self.prefix)
    }

    pub fn member(&self, name: &str) -> String {
        format!("{}members/{name}", self.prefix)
    }

    pub fn members_prefix(&self) -> String {
        format!("{}members/", self.prefix)
    }

    pub fn initialize(&self) -> String {
        format!("{}initialize", self.prefix)
    }

    pub fn config(&self) -> String {
        format!("{}config", self.prefix)
    }

    pub fn status(&self) -> String {
        format!("{}status", self.prefix)
    }

    pub fn history(&self) -> String {
        format!("{}history", self.prefix)
    }

    pub fn failover(&self) -> String {
        format!("{}failover", self.prefix)
    }

    pub fn sync(&self) -> String {
        format!("{}sync", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patroni_layout() {
        let keys = Keys::new("/service", "demo");
        assert_eq!(keys.leader(), "/service/demo/leader");
        assert_eq!(keys.member("n1"), "/service/demo/members/n1");
        assert_eq!(keys.initialize(), "/service/demo/initialize");
        assert_eq!(Keys::new("service/", "demo").prefix(), "/service/demo/");
        assert_eq!(Keys::new("/", "demo").prefix(), "/demo/");
    }
}
