//! The entity names of the conventions (`Agent`, `Group`, `Action`, `Resource`) and the wildcard groups
//! every action belongs to.

use std::str::FromStr;
use std::sync::OnceLock;

use cedar_policy::{EntityId, EntityTypeName, EntityUid};

/// Entity type of principals.
pub(crate) const AGENT: &str = "Agent";
/// Entity type of actions and action groups.
pub(crate) const ACTION: &str = "Action";
/// Entity type of resources.
pub(crate) const RESOURCE: &str = "Resource";
/// Entity type of agent groups (an agent's parents, from the registry).
pub(crate) const GROUP: &str = "Group";
/// The group every action is in.
pub(crate) const ROOT_GROUP: &str = "*";

/// The wildcard groups `action` is a member of, most specific first, never `action` itself:
/// `aws.iam.create_user` is in `aws.iam.*`, `aws.*` and `*`. A group is the action's name cut
/// after one of its dots, plus `*`; so `action` is in group `p*` exactly when `p` ends with a dot
/// and `action` starts with `p` (or `p` is empty).
pub(crate) fn action_groups(action: &str) -> Vec<String> {
    let mut groups: Vec<String> = action
        .char_indices()
        .filter(|&(_, c)| c == '.')
        .rev()
        .filter_map(|(i, _)| action.get(..=i))
        .map(|prefix| format!("{prefix}*"))
        .filter(|group| group != action)
        .collect();
    if action != ROOT_GROUP {
        groups.push(ROOT_GROUP.to_string());
    }
    groups
}

/// The entity type names, parsed once.
pub(crate) struct Names {
    agent: EntityTypeName,
    action: EntityTypeName,
    resource: EntityTypeName,
    group: EntityTypeName,
}

impl Names {
    /// The shared instance; `None` only if Cedar rejected the constant names (it does not), in
    /// which case every decision denies.
    pub(crate) fn get() -> Option<&'static Names> {
        static NAMES: OnceLock<Option<Names>> = OnceLock::new();
        NAMES
            .get_or_init(|| {
                Some(Names {
                    agent: EntityTypeName::from_str(AGENT).ok()?,
                    action: EntityTypeName::from_str(ACTION).ok()?,
                    resource: EntityTypeName::from_str(RESOURCE).ok()?,
                    group: EntityTypeName::from_str(GROUP).ok()?,
                })
            })
            .as_ref()
    }

    /// `Agent::"<id>"`.
    pub(crate) fn agent(&self, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(self.agent.clone(), EntityId::new(id))
    }

    /// `Action::"<id>"`.
    pub(crate) fn action(&self, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(self.action.clone(), EntityId::new(id))
    }

    /// `Group::"<id>"`.
    pub(crate) fn group(&self, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(self.group.clone(), EntityId::new(id))
    }

    /// `Resource::"<id>"`.
    pub(crate) fn resource(&self, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(self.resource.clone(), EntityId::new(id))
    }
}

/// The id of `uid` if it is an `Action`, else `None`.
pub(crate) fn action_id(uid: &EntityUid) -> Option<&str> {
    (uid.type_name().to_string() == ACTION).then(|| uid.id().unescaped())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_the_dotted_prefixes_then_the_root() {
        assert_eq!(
            action_groups("aws.iam.create_user"),
            ["aws.iam.*", "aws.*", "*"]
        );
        assert_eq!(action_groups("hello"), ["*"]);
        assert_eq!(action_groups("a.b."), ["a.b.*", "a.*", "*"]);
        assert_eq!(action_groups("..x"), ["..*", ".*", "*"]);
        assert_eq!(action_groups(""), ["*"]);
    }

    #[test]
    fn a_group_name_asked_as_an_action_is_not_its_own_parent() {
        assert_eq!(action_groups("aws.*"), ["*"]);
        assert_eq!(action_groups("aws.iam.*"), ["aws.*", "*"]);
        assert!(action_groups("*").is_empty());
    }

    #[test]
    fn uids_use_the_convention_types() {
        let names = Names::get().unwrap();
        assert_eq!(
            names.action("a.b").to_string(),
            r#"Action::"a.b""#.to_string()
        );
        assert_eq!(action_id(&names.action("x")), Some("x"));
        assert_eq!(action_id(&names.agent("x")), None);
        assert_eq!(names.resource("r").type_name().to_string(), RESOURCE);
    }
}
