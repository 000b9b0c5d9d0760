//! The wildcard groups the policy set names, as a trie of name segments: the groups an action
//! is in are found in one pass over its name, and only groups some policy names are built
//! (no other group can change a decision: policies reach groups only by literal entity ids).

use std::collections::HashMap;

/// The groups named by a policy set (`aws.*`, `aws.s3.*`; not the root `*`).
#[derive(Debug, Default)]
pub(crate) struct NamedGroups {
    root: Node,
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<String, Node>,
    /// The group ending at this node (`aws.s3.*` at `aws` → `s3`), if a policy names it.
    group: Option<String>,
}

impl NamedGroups {
    /// Adds `name` if it is a group (`<prefix>.*`); other names are not groups and are ignored.
    pub(crate) fn add(&mut self, name: &str) {
        let Some(prefix) = name.strip_suffix(".*") else {
            return;
        };
        let mut node = &mut self.root;
        for segment in prefix.split('.') {
            node = node.children.entry(segment.to_string()).or_default();
        }
        node.group = Some(name.to_string());
    }

    /// The named groups `action` is in, most specific first: each `p.*` with `action` starting
    /// `p.`. Time linear in the length of `action`.
    pub(crate) fn of(&self, action: &str) -> Vec<&str> {
        let mut found = Vec::new();
        let Some((parents, _)) = action.rsplit_once('.') else {
            return found;
        };
        let mut node = &self.root;
        for segment in parents.split('.') {
            match node.children.get(segment) {
                Some(child) => node = child,
                None => break,
            }
            if let Some(group) = &node.group {
                found.push(group.as_str());
            }
        }
        found.reverse();
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_named_groups_of_an_action_most_specific_first() {
        let mut groups = NamedGroups::default();
        for name in [
            "aws.*",
            "aws.iam.*",
            "gcp.*",
            "aws.iam.create_user",
            "*",
            "a.b.c.*",
        ] {
            groups.add(name);
        }
        assert_eq!(groups.of("aws.iam.create_user"), ["aws.iam.*", "aws.*"]);
        assert_eq!(groups.of("aws.s3.get"), ["aws.*"]);
        assert_eq!(groups.of("aws.iam"), ["aws.*"]);
        assert_eq!(groups.of("aws"), Vec::<&str>::new());
        assert_eq!(groups.of("a.b.c.d"), ["a.b.c.*"]);
        assert_eq!(groups.of("a.b.x"), Vec::<&str>::new());
        assert_eq!(groups.of("gcpx.y"), Vec::<&str>::new());
    }
}
