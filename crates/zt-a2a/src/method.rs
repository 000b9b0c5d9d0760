//! The A2A JSON-RPC methods the proxy knows, in both protocol generations, and the one action
//! name each maps to. A method outside this table is refused, never forwarded.

/// Which generation of the A2A JSON-RPC binding a call uses (known from its method name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Generation {
    /// A2A 1.0: `SendMessage`, `GetTask`, ...
    V1_0,
    /// A2A 0.3: `message/send`, `tasks/get`, ...
    V0_3,
}

impl Generation {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Generation::V1_0 => "1.0",
            Generation::V0_3 => "0.3",
        }
    }
}

/// What a method does, which decides how a refusal is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Sends a message, answered with a task or message.
    Message,
    /// Sends a message, answered with an event stream.
    StreamingMessage,
    /// Anything else (tasks, push-notification configs, the extended card).
    Other,
}

/// A known method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct A2aMethod {
    /// The action's last segment (`send_message`).
    pub(crate) action: &'static str,
    pub(crate) generation: Generation,
    pub(crate) shape: Shape,
}

const TABLE: &[(&str, &str, Generation, Shape)] = &[
    (
        "SendMessage",
        "send_message",
        Generation::V1_0,
        Shape::Message,
    ),
    (
        "SendStreamingMessage",
        "send_streaming_message",
        Generation::V1_0,
        Shape::StreamingMessage,
    ),
    ("GetTask", "get_task", Generation::V1_0, Shape::Other),
    ("ListTasks", "list_tasks", Generation::V1_0, Shape::Other),
    ("CancelTask", "cancel_task", Generation::V1_0, Shape::Other),
    (
        "SubscribeToTask",
        "subscribe_to_task",
        Generation::V1_0,
        Shape::Other,
    ),
    (
        "CreateTaskPushNotificationConfig",
        "create_task_push_notification_config",
        Generation::V1_0,
        Shape::Other,
    ),
    (
        "GetTaskPushNotificationConfig",
        "get_task_push_notification_config",
        Generation::V1_0,
        Shape::Other,
    ),
    (
        "ListTaskPushNotificationConfigs",
        "list_task_push_notification_configs",
        Generation::V1_0,
        Shape::Other,
    ),
    (
        "DeleteTaskPushNotificationConfig",
        "delete_task_push_notification_config",
        Generation::V1_0,
        Shape::Other,
    ),
    (
        "GetExtendedAgentCard",
        "get_extended_agent_card",
        Generation::V1_0,
        Shape::Other,
    ),
    (
        "message/send",
        "send_message",
        Generation::V0_3,
        Shape::Message,
    ),
    (
        "message/stream",
        "send_streaming_message",
        Generation::V0_3,
        Shape::StreamingMessage,
    ),
    ("tasks/get", "get_task", Generation::V0_3, Shape::Other),
    ("tasks/list", "list_tasks", Generation::V0_3, Shape::Other),
    (
        "tasks/cancel",
        "cancel_task",
        Generation::V0_3,
        Shape::Other,
    ),
    (
        "tasks/resubscribe",
        "subscribe_to_task",
        Generation::V0_3,
        Shape::Other,
    ),
    (
        "tasks/pushNotificationConfig/set",
        "create_task_push_notification_config",
        Generation::V0_3,
        Shape::Other,
    ),
    (
        "tasks/pushNotificationConfig/get",
        "get_task_push_notification_config",
        Generation::V0_3,
        Shape::Other,
    ),
    (
        "tasks/pushNotificationConfig/list",
        "list_task_push_notification_configs",
        Generation::V0_3,
        Shape::Other,
    ),
    (
        "tasks/pushNotificationConfig/delete",
        "delete_task_push_notification_config",
        Generation::V0_3,
        Shape::Other,
    ),
    (
        "agent/getAuthenticatedExtendedCard",
        "get_extended_agent_card",
        Generation::V0_3,
        Shape::Other,
    ),
];

impl A2aMethod {
    /// The known method named exactly `name` (case-sensitive, as on the wire).
    pub(crate) fn lookup(name: &str) -> Option<A2aMethod> {
        TABLE
            .iter()
            .find(|(wire, ..)| *wire == name)
            .map(|&(_, action, generation, shape)| A2aMethod {
                action,
                generation,
                shape,
            })
    }

    /// Every wire name with its action name (for the docs and tests).
    #[cfg(test)]
    pub(crate) fn all() -> impl Iterator<Item = (&'static str, &'static str)> {
        TABLE.iter().map(|&(wire, action, ..)| (wire, action))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_generations_map_to_one_action_name() {
        let pairs = [
            ("SendMessage", "message/send", "send_message"),
            (
                "SendStreamingMessage",
                "message/stream",
                "send_streaming_message",
            ),
            ("GetTask", "tasks/get", "get_task"),
            ("ListTasks", "tasks/list", "list_tasks"),
            ("CancelTask", "tasks/cancel", "cancel_task"),
            ("SubscribeToTask", "tasks/resubscribe", "subscribe_to_task"),
            (
                "GetExtendedAgentCard",
                "agent/getAuthenticatedExtendedCard",
                "get_extended_agent_card",
            ),
        ];
        for (v1, v03, action) in pairs {
            let new = A2aMethod::lookup(v1).unwrap();
            let old = A2aMethod::lookup(v03).unwrap();
            assert_eq!((new.action, new.generation), (action, Generation::V1_0));
            assert_eq!((old.action, old.generation), (action, Generation::V0_3));
            assert_eq!(new.shape, old.shape);
        }
    }

    #[test]
    fn action_names_are_snake_case_and_wire_names_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for (wire, action) in A2aMethod::all() {
            assert!(seen.insert(wire), "`{wire}` twice");
            assert!(
                action.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{action}"
            );
        }
    }

    #[test]
    fn unknown_and_miscased_methods_are_not_known() {
        for name in [
            "sendMessage",
            "SENDMESSAGE",
            "message/Send",
            "tasks/delete",
            "",
            " SendMessage",
        ] {
            assert!(A2aMethod::lookup(name).is_none(), "`{name}`");
        }
    }
}
