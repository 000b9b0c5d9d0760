//! What each tool of the server declares about its arguments, read from the server's own
//! `tools/list`, so that the agent cannot choose what a call is decided on.
//!
//! Without it the gateway took the resource from whichever candidate argument came first, and
//! an agent could add one the tool ignores (`write_file` with `path` to write and a harmless
//! `resource` to be decided on). Now a call may carry only the arguments its tool declares
//! (unless the tool's schema admits others), and only declared arguments name the resource.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rmcp::model::JsonObject;
use serde_json::Value;
use tokio::sync::Mutex;

/// The prefix of the ids of the gateway's own requests to the server. A client message with
/// such an id is refused, so that no answer meant for the client can pass for the gateway's.
pub(crate) const OWN_ID_PREFIX: &str = "zt-gateway/";
/// Pages of `tools/list` followed at most (a server that pages for ever is refused).
pub(crate) const MAX_PAGES: usize = 64;
/// How long reading the whole list may take (every page).
pub(crate) const LIST_TIMEOUT: Duration = Duration::from_secs(10);
/// A list read this recently is not read again for a call it does not cover: an agent's
/// calls of unknown tools cost the server at most one `tools/list` a second.
const REFRESH_AFTER: Duration = Duration::from_secs(1);
/// A list older than this is read again before it is used: the gateway may miss the server's
/// notice that its tools changed (an HTTP client that opens no event stream, an event too
/// large to be read).
const MAX_AGE: Duration = Duration::from_secs(60);
/// The server's notice that its tools changed: the gateway reads the list again.
pub(crate) const TOOLS_CHANGED: &str = "notifications/tools/list_changed";
/// Searched for in a server line before it is parsed as one of the gateway's answers: the
/// prefix without its `/`, which a JSON encoder may write as `\/`.
pub(crate) const OWN_ID_MARK: &[u8] = b"zt-gateway";
/// Searched for before a line is parsed as [`TOOLS_CHANGED`] (without its `/`, as above).
pub(crate) const TOOLS_CHANGED_MARK: &[u8] = b"list_changed";

/// The arguments one tool declares: the keys of its `inputSchema.properties`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeclaredArguments {
    names: BTreeSet<String>,
    /// The schema's `additionalProperties` is `true` or a schema: other arguments may come,
    /// and reach the decision's context, but never name the resource.
    open: bool,
}

impl DeclaredArguments {
    /// From a tool's `inputSchema` (JSON Schema; `properties` absent means none declared).
    pub fn from_input_schema(schema: &Value) -> Self {
        let names = schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|properties| properties.keys().cloned().collect())
            .unwrap_or_default();
        let open = match schema.get("additionalProperties") {
            Some(Value::Bool(open)) => *open,
            Some(Value::Object(_)) => true,
            _ => false,
        };
        Self { names, open }
    }

    /// Whether the tool declares `name`.
    pub fn declares(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// The first argument (in byte order) the tool does not declare and does not admit.
    pub fn undeclared<'a>(&self, arguments: Option<&'a JsonObject>) -> Option<&'a str> {
        if self.open {
            return None;
        }
        arguments?
            .keys()
            .map(String::as_str)
            .filter(|name| !self.declares(name))
            .min()
    }
}

/// Why a call cannot be checked against its tool's declaration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolsError {
    /// The server does not list the tool.
    #[error("tool `{0}` is not in the server's tools/list")]
    NotListed(String),
    /// The server's list could not be read.
    #[error("the server's tool list could not be read: {0}")]
    Unreadable(String),
}

/// Asks the server for one page of `tools/list`: the JSON-RPC `result` of the request with
/// `id`, and `cursor` as its `params.cursor`.
pub(crate) trait ListTools {
    /// Returns once the server may be asked (or why it may not be): awaited before the list
    /// is locked, so that calls waiting for it wait together, not one after another.
    fn ready(&self) -> impl Future<Output = Result<(), String>> + Send {
        async { Ok(()) }
    }

    fn list_page(
        &self,
        id: String,
        cursor: Option<String>,
    ) -> impl Future<Output = Result<Value, String>> + Send;
}

/// The request the gateway sends for one page.
pub(crate) fn list_request(id: &str, cursor: Option<&str>) -> Value {
    match cursor {
        None => serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"}),
        Some(cursor) => serde_json::json!({
            "jsonrpc": "2.0", "id": id, "method": "tools/list", "params": {"cursor": cursor}
        }),
    }
}

/// The server's tools, as last read.
#[derive(Debug, Default)]
struct Catalog {
    tools: HashMap<String, DeclaredArguments>,
    read_at: Option<Instant>,
    /// [`ToolCache::changes`] when the reading began.
    changes: u64,
    /// The number in the id of the gateway's next request.
    next_id: u64,
}

/// The tools of one server session, read when a call needs them.
#[derive(Debug, Default)]
pub(crate) struct ToolCache {
    catalog: Mutex<Catalog>,
    /// How often the server said its tools changed. Counted, not waited for: the notice
    /// arrives on the same stream as the answer a reading in progress waits for.
    changes: AtomicU64,
}

impl ToolCache {
    /// What `tool` declares: from the list already read when it covers this call (the tool is
    /// listed and declares every argument), else from the list read again (at most once a
    /// second; concurrent calls share one reading).
    pub(crate) async fn declared<L: ListTools>(
        &self,
        lister: &L,
        tool: &str,
        arguments: Option<&JsonObject>,
    ) -> Result<DeclaredArguments, ToolsError> {
        lister.ready().await.map_err(ToolsError::Unreadable)?;
        let mut catalog = self.catalog.lock().await;
        let changes = self.changes.load(Ordering::Acquire);
        let current = catalog.changes == changes;
        let covers = |catalog: &Catalog| {
            catalog
                .read_at
                .filter(|at| current && at.elapsed() < MAX_AGE)
                .and_then(|_| catalog.tools.get(tool))
                .filter(|declared| declared.undeclared(arguments).is_none())
                .cloned()
        };
        if let Some(declared) = covers(&catalog) {
            return Ok(declared);
        }
        let fresh = current
            && catalog
                .read_at
                .is_some_and(|at| at.elapsed() < REFRESH_AFTER);
        if !fresh {
            let first_id = catalog.next_id;
            catalog.next_id += MAX_PAGES as u64;
            catalog.tools = tokio::time::timeout(LIST_TIMEOUT, read_all(lister, first_id))
                .await
                .map_err(|_| {
                    ToolsError::Unreadable(format!("no answer within {} s", LIST_TIMEOUT.as_secs()))
                })??;
            catalog.read_at = Some(Instant::now());
            catalog.changes = changes;
        }
        catalog
            .tools
            .get(tool)
            .cloned()
            .ok_or_else(|| ToolsError::NotListed(tool.to_string()))
    }

    /// The server said its tools changed: the list is read again before its next use, even
    /// within the second that bounds the readings an agent's calls cause.
    pub(crate) fn forget(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
    }
}

/// Every page of the server's list, the requests numbered from `first_id`.
async fn read_all<L: ListTools>(
    lister: &L,
    first_id: u64,
) -> Result<HashMap<String, DeclaredArguments>, ToolsError> {
    let mut tools = HashMap::new();
    let mut cursor = None;
    for n in (first_id..).take(MAX_PAGES) {
        let id = format!("{OWN_ID_PREFIX}tools-list/{n}");
        let page = lister
            .list_page(id, cursor.take())
            .await
            .map_err(ToolsError::Unreadable)?;
        cursor = read_page(&page, &mut tools).map_err(ToolsError::Unreadable)?;
        if cursor.is_none() {
            return Ok(tools);
        }
    }
    Err(ToolsError::Unreadable(format!(
        "more than {MAX_PAGES} pages"
    )))
}

/// Adds one page's tools to `tools`; returns the next page's cursor, if any.
fn read_page(
    result: &Value,
    tools: &mut HashMap<String, DeclaredArguments>,
) -> Result<Option<String>, String> {
    let listed = result
        .get("tools")
        .and_then(Value::as_array)
        .ok_or("the result has no `tools` array")?;
    for tool in listed {
        let name = tool
            .get("name")
            .and_then(Value::as_str)
            .ok_or("a tool without a name")?;
        let schema = tool
            .get("inputSchema")
            .ok_or_else(|| format!("tool `{name}` has no inputSchema"))?;
        // Two tools of one name: which one the server runs is its guess, not ours.
        if tools
            .insert(
                name.to_string(),
                DeclaredArguments::from_input_schema(schema),
            )
            .is_some()
        {
            return Err(format!("tool `{name}` is listed twice"));
        }
    }
    match result.get("nextCursor") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(cursor)) => Ok(Some(cursor.clone())),
        Some(_) => Err("`nextCursor` is not a string".into()),
    }
}

/// Whether a JSON-RPC message (or batch) is, or holds, the server's notice that its tools
/// changed.
pub(crate) fn announces_tools_changed(message: &Value) -> bool {
    let is_notice = |message: &Value| {
        message.get("method").and_then(Value::as_str) == Some(TOOLS_CHANGED)
            && message.get("id").is_none()
    };
    match message {
        Value::Array(batch) => batch.iter().any(is_notice),
        single => is_notice(single),
    }
}

/// A server message parsed, but only when its bytes hold one of `marks`: most of the server's
/// messages are none the gateway looks for, and a search costs far less than a parse.
pub(crate) fn parse_if_marked<'a>(
    message: &[u8],
    marks: impl IntoIterator<Item = &'a [u8]>,
) -> Option<Value> {
    marks
        .into_iter()
        .any(|mark| memchr::memmem::find(message, mark).is_some())
        .then(|| zt_contract::strict_json::parse_value(message).ok())
        .flatten()
}

/// Whether one message's bytes are the notice that the tools changed (or a batch holding it).
pub(crate) fn is_tools_changed_notice(message: &[u8]) -> bool {
    parse_if_marked(message, [TOOLS_CHANGED_MARK])
        .is_some_and(|message| announces_tools_changed(&message))
}

/// A JSON-RPC message's `id` when it is one of the gateway's own.
pub(crate) fn own_id(message: &Value) -> Option<&str> {
    message
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| id.starts_with(OWN_ID_PREFIX))
}

/// The `result` of an answer to one of the gateway's requests, or why there is none.
pub(crate) fn result_of(answer: Value) -> Result<Value, String> {
    match answer {
        Value::Object(mut answer) => {
            if let Some(result) = answer.remove("result") {
                return Ok(result);
            }
            match answer.get("error") {
                Some(error) => Err(format!("the server answered {error}")),
                None => Err("the answer has neither result nor error".into()),
            }
        }
        _ => Err("the answer is not an object".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::AtomicUsize;

    fn args(value: Value) -> JsonObject {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn a_tool_declares_the_keys_of_its_schema_properties() {
        let declared = DeclaredArguments::from_input_schema(&json!({
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path"]
        }));
        assert!(declared.declares("path") && declared.declares("content"));
        assert_eq!(
            declared.undeclared(Some(&args(json!({"path": "/a"})))),
            None
        );
        assert_eq!(
            declared.undeclared(Some(&args(
                json!({"path": "/a", "resource": "x", "zeta": 1, "id": 2})
            ))),
            Some("id"),
            "the first in byte order, whatever the call's order"
        );
        assert_eq!(declared.undeclared(None), None);
        let none = DeclaredArguments::from_input_schema(&json!({"type": "object"}));
        assert_eq!(none.undeclared(Some(&args(json!({"a": 1})))), Some("a"));
    }

    #[test]
    fn a_schema_that_admits_other_arguments_lets_them_through() {
        for extra in [json!(true), json!({"type": "string"})] {
            let declared = DeclaredArguments::from_input_schema(&json!({
                "properties": {"path": {}}, "additionalProperties": extra
            }));
            assert_eq!(declared.undeclared(Some(&args(json!({"other": 1})))), None);
            assert!(!declared.declares("other"));
        }
        let closed = DeclaredArguments::from_input_schema(&json!({
            "properties": {"path": {}}, "additionalProperties": false
        }));
        assert_eq!(
            closed.undeclared(Some(&args(json!({"other": 1})))),
            Some("other")
        );
    }

    /// A server whose list has `pages` pages of one tool each, counting the pages asked.
    struct Pages {
        pages: usize,
        asked: AtomicUsize,
        ids: std::sync::Mutex<Vec<String>>,
    }

    impl Pages {
        fn new(pages: usize) -> Self {
            Self {
                pages,
                asked: AtomicUsize::new(0),
                ids: std::sync::Mutex::new(Vec::new()),
            }
        }
    }

    impl ListTools for Pages {
        async fn list_page(&self, id: String, cursor: Option<String>) -> Result<Value, String> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            self.ids.lock().unwrap().push(id);
            let page: usize = cursor.map_or(0, |c| c.parse().unwrap());
            let mut result = json!({"tools": [{
                "name": format!("tool{page}"),
                "inputSchema": {"type": "object", "properties": {"path": {}}}
            }]});
            if page + 1 < self.pages {
                result["nextCursor"] = json!((page + 1).to_string());
            }
            Ok(result)
        }
    }

    #[tokio::test]
    async fn every_page_is_read_and_the_list_is_kept() {
        let cache = ToolCache::default();
        let server = Pages::new(3);
        let path = args(json!({"path": "/a"}));
        let declared = cache.declared(&server, "tool2", Some(&path)).await.unwrap();
        assert!(declared.declares("path"));
        assert_eq!(server.asked.load(Ordering::SeqCst), 3);
        cache.declared(&server, "tool0", Some(&path)).await.unwrap();
        assert_eq!(server.asked.load(Ordering::SeqCst), 3, "read once");
        let ids = server.ids.lock().unwrap().clone();
        assert!(
            ids.iter().all(|id| id.starts_with(OWN_ID_PREFIX)),
            "{ids:?}"
        );
        assert_eq!(
            ids.iter().collect::<BTreeSet<_>>().len(),
            3,
            "one id per page"
        );
    }

    #[tokio::test]
    async fn an_unlisted_tool_is_refused_and_read_again_at_most_once_a_second() {
        let cache = ToolCache::default();
        let server = Pages::new(1);
        for _ in 0..5 {
            assert_eq!(
                cache.declared(&server, "nope", None).await,
                Err(ToolsError::NotListed("nope".into()))
            );
        }
        assert_eq!(server.asked.load(Ordering::SeqCst), 1);
        // A call with an argument the kept list does not declare is also a reason to read again.
        assert!(cache
            .declared(&server, "tool0", Some(&args(json!({"x": 1}))))
            .await
            .is_ok_and(|declared| !declared.declares("x")));
        assert_eq!(server.asked.load(Ordering::SeqCst), 1);
        cache.forget();
        let _ = cache.declared(&server, "tool0", None).await;
        assert_eq!(server.asked.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_server_that_pages_for_ever_is_refused() {
        let cache = ToolCache::default();
        let server = Pages::new(usize::MAX);
        let error = cache.declared(&server, "tool0", None).await.unwrap_err();
        assert_eq!(
            error,
            ToolsError::Unreadable(format!("more than {MAX_PAGES} pages"))
        );
        assert_eq!(server.asked.load(Ordering::SeqCst), MAX_PAGES);
    }

    #[test]
    fn a_malformed_page_is_refused() {
        let mut tools = HashMap::new();
        for (page, why) in [
            (json!({}), "no `tools`"),
            (json!({"tools": [{"inputSchema": {}}]}), "without a name"),
            (json!({"tools": [{"name": "a"}]}), "no inputSchema"),
            (
                json!({"tools": [{"name": "a", "inputSchema": {}}, {"name": "a", "inputSchema": {}}]}),
                "listed twice",
            ),
            (json!({"tools": [], "nextCursor": 3}), "not a string"),
        ] {
            tools.clear();
            let error = read_page(&page, &mut tools).unwrap_err();
            assert!(error.contains(why), "{page}: {error}");
        }
    }

    #[test]
    fn the_notice_that_the_tools_changed_is_told_apart() {
        let notice = json!({"jsonrpc": "2.0", "method": TOOLS_CHANGED});
        assert!(announces_tools_changed(&notice));
        assert!(announces_tools_changed(
            &json!([{"id": 1, "result": {}}, notice])
        ));
        for other in [
            json!({"jsonrpc": "2.0", "id": 1, "method": TOOLS_CHANGED}),
            json!({"jsonrpc": "2.0", "method": "notifications/resources/list_changed"}),
            json!({"jsonrpc": "2.0", "id": 1, "result": {"method": TOOLS_CHANGED}}),
            json!([]),
        ] {
            assert!(!announces_tools_changed(&other), "{other}");
        }
    }

    #[test]
    fn only_marked_messages_are_parsed() {
        let notice = br#"{"jsonrpc":"2.0","method":"notifications\/tools\/list_changed"}"#;
        assert!(is_tools_changed_notice(notice), "escaped `/`");
        assert!(!is_tools_changed_notice(br#"{"method":"list_changed"}"#));
        assert_eq!(parse_if_marked(br#"{"id":1}"#, [b"zt".as_slice()]), None);
        assert_eq!(
            parse_if_marked(br#"{"id":"zt"}"#, [b"x".as_slice(), b"zt"]),
            Some(json!({"id": "zt"}))
        );
        assert_eq!(
            parse_if_marked(b"zt {", [b"zt".as_slice()]),
            None,
            "unreadable"
        );
    }

    #[test]
    fn answers_to_the_gateway_are_told_apart() {
        assert_eq!(
            own_id(&json!({"id": "zt-gateway/tools-list/0", "result": {}})),
            Some("zt-gateway/tools-list/0")
        );
        assert_eq!(own_id(&json!({"id": 3, "result": {}})), None);
        assert_eq!(own_id(&json!({"id": "other"})), None);
        assert_eq!(
            result_of(json!({"result": {"tools": []}})),
            Ok(json!({"tools": []}))
        );
        assert!(result_of(json!({"error": {"code": -32601}}))
            .unwrap_err()
            .contains("-32601"));
        assert!(result_of(json!([])).is_err());
    }
}
