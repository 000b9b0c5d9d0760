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

/// Which parameter of a method names what it acts on: the resource of its decision. It must be
/// the one the agent reads, per method: in both generations a task method names its task by
/// `id`, while the push-notification methods of 1.0 name it by `taskId` (their `id` is the
/// config's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subject {
    /// The message's (see `RpcCall::resource`).
    Message,
    /// `params.id`: a task.
    Id,
    /// `params.taskId`: a task.
    TaskId,
    /// `params.contextId`: the context whose tasks are listed (none: all).
    ContextId,
    /// Nothing (the extended card).
    Nothing,
}

impl Subject {
    /// The parameter naming the subject, for the methods whose subject is one.
    pub(crate) fn key(self) -> Option<&'static str> {
        match self {
            Subject::Id => Some("id"),
            Subject::TaskId => Some("taskId"),
            Subject::ContextId => Some("contextId"),
            Subject::Message | Subject::Nothing => None,
        }
    }
}

/// A known method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct A2aMethod {
    /// The action's last segment (`send_message`).
    pub(crate) action: &'static str,
    pub(crate) generation: Generation,
    pub(crate) shape: Shape,
    pub(crate) subject: Subject,
}

const TABLE: &[(&str, &str, Generation, Shape, Subject)] = &[
    (
        "SendMessage",
        "send_message",
        Generation::V1_0,
        Shape::Message,
        Subject::Message,
    ),
    (
        "SendStreamingMessage",
        "send_streaming_message",
        Generation::V1_0,
        Shape::StreamingMessage,
        Subject::Message,
    ),
    (
        "GetTask",
        "get_task",
        Generation::V1_0,
        Shape::Other,
        Subject::Id,
    ),
    (
        "ListTasks",
        "list_tasks",
        Generation::V1_0,
        Shape::Other,
        Subject::ContextId,
    ),
    (
        "CancelTask",
        "cancel_task",
        Generation::V1_0,
        Shape::Other,
        Subject::Id,
    ),
    (
        "SubscribeToTask",
        "subscribe_to_task",
        Generation::V1_0,
        Shape::Other,
        Subject::Id,
    ),
    (
        "CreateTaskPushNotificationConfig",
        "create_task_push_notification_config",
        Generation::V1_0,
        Shape::Other,
        Subject::TaskId,
    ),
    (
        "GetTaskPushNotificationConfig",
        "get_task_push_notification_config",
        Generation::V1_0,
        Shape::Other,
        Subject::TaskId,
    ),
    (
        "ListTaskPushNotificationConfigs",
        "list_task_push_notification_configs",
        Generation::V1_0,
        Shape::Other,
        Subject::TaskId,
    ),
    (
        "DeleteTaskPushNotificationConfig",
        "delete_task_push_notification_config",
        Generation::V1_0,
        Shape::Other,
        Subject::TaskId,
    ),
    (
        "GetExtendedAgentCard",
        "get_extended_agent_card",
        Generation::V1_0,
        Shape::Other,
        Subject::Nothing,
    ),
    (
        "message/send",
        "send_message",
        Generation::V0_3,
        Shape::Message,
        Subject::Message,
    ),
    (
        "message/stream",
        "send_streaming_message",
        Generation::V0_3,
        Shape::StreamingMessage,
        Subject::Message,
    ),
    (
        "tasks/get",
        "get_task",
        Generation::V0_3,
        Shape::Other,
        Subject::Id,
    ),
    (
        "tasks/list",
        "list_tasks",
        Generation::V0_3,
        Shape::Other,
        Subject::ContextId,
    ),
    (
        "tasks/cancel",
        "cancel_task",
        Generation::V0_3,
        Shape::Other,
        Subject::Id,
    ),
    (
        "tasks/resubscribe",
        "subscribe_to_task",
        Generation::V0_3,
        Shape::Other,
        Subject::Id,
    ),
    (
        "tasks/pushNotificationConfig/set",
        "create_task_push_notification_config",
        Generation::V0_3,
        Shape::Other,
        Subject::TaskId,
    ),
    (
        "tasks/pushNotificationConfig/get",
        "get_task_push_notification_config",
        Generation::V0_3,
        Shape::Other,
        Subject::Id,
    ),
    (
        "tasks/pushNotificationConfig/list",
        "list_task_push_notification_configs",
        Generation::V0_3,
        Shape::Other,
        Subject::Id,
    ),
    (
        "tasks/pushNotificationConfig/delete",
        "delete_task_push_notification_config",
        Generation::V0_3,
        Shape::Other,
        Subject::Id,
    ),
    (
        "agent/getAuthenticatedExtendedCard",
        "get_extended_agent_card",
        Generation::V0_3,
        Shape::Other,
        Subject::Nothing,
    ),
];

impl A2aMethod {
    /// The known method named exactly `name` (case-sensitive, as on the wire).
    pub(crate) fn lookup(name: &str) -> Option<A2aMethod> {
        TABLE.iter().find(|(wire, ..)| *wire == name).map(
            |&(_, action, generation, shape, subject)| A2aMethod {
                action,
                generation,
                shape,
                subject,
            },
        )
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
