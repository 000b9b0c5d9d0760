//! The policy decision point: a validated Cedar policy set, indexed by action, principal and
//! resource.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use cedar_policy::{AuthorizationError, Authorizer, Effect, Entities, PolicySet, Request};

use crate::action_policy::{ActionPolicy, REASON_NOT_ALLOWED};
use crate::compile_json;
use crate::context;
use crate::entities;
use crate::error::PolicyError;
use crate::load::{self, Loaded};
use crate::names::Names;
use crate::request::{PolicyDecision, PolicyRequest};
use crate::scope::BucketId;
use crate::scoped::Scoped;
use crate::slice::{Slice, Slicer};
use crate::validate::{self, Validated};

/// What the engine keeps of each policy, by position in the set.
#[derive(Debug)]
struct PolicyInfo {
    id: String,
    reason: Option<String>,
    forbid: bool,
    /// Its canonical Cedar text (see [`PolicyEngine::policy_text`]).
    text: String,
}

/// A loaded, validated policy set that decides requests. Immutable (its only inner state is a
/// bounded cache of per-action slices), `Send + Sync`: share it in an `Arc`. Loading builds the
/// whole index, so a large set is best loaded off any latency-sensitive thread and swapped in.
pub struct PolicyEngine {
    policies: Vec<PolicyInfo>,
    positions: HashMap<String, usize>,
    slicer: Slicer,
    authorizer: Authorizer,
    source: String,
    version: String,
    warnings: Vec<String>,
}

impl fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("version", &self.version)
            .field("policies", &self.policies.len())
            .finish_non_exhaustive()
    }
}

impl PolicyEngine {
    /// Parses Cedar policy text and validates it against the shipped schema (policies
    /// annotated `@unvalidated("why")` excepted). Errors carry the line and column.
    pub fn from_cedar(text: &str) -> Result<Self, PolicyError> {
        let loaded = load::parse(text)?;
        let validated = validate::validate(text, &loaded)?;
        Self::assemble(loaded, validated)
    }

    /// Compiles a reference JSON policy to Cedar; the engine decides exactly as
    /// [`ActionPolicy::evaluate`], with the same reasons.
    pub fn from_action_policy(policy: &ActionPolicy) -> Result<Self, PolicyError> {
        policy.validate()?;
        Self::from_cedar(&compile_json::to_cedar(policy))
    }

    /// Loads a policy file: `.json` is the reference format, `.cedar` is Cedar.
    pub fn from_file(path: &Path) -> Result<Self, PolicyError> {
        let shown = path.display().to_string();
        let extension = path.extension().and_then(|e| e.to_str());
        if !matches!(extension, Some("json" | "cedar")) {
            return Err(PolicyError::UnknownFormat { path: shown });
        }
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            path: shown.clone(),
            source,
        })?;
        let loaded = if extension == Some("json") {
            ActionPolicy::from_json(&text).and_then(|p| Self::from_action_policy(&p))
        } else {
            Self::from_cedar(&text)
        };
        loaded.map_err(|source| PolicyError::File {
            path: shown,
            source: Box::new(source),
        })
    }

    /// The shipped default: deny by default, and `aws.ec2.terminate_instances` denied with
    /// its own reason ([`ActionPolicy::default`], compiled).
    pub fn default_policy() -> Self {
        Self::from_action_policy(&ActionPolicy::default()).unwrap_or_else(|_| Self::deny_all())
    }

    /// An engine with no policies: it denies everything.
    fn deny_all() -> Self {
        Self {
            policies: Vec::new(),
            positions: HashMap::new(),
            slicer: Slicer::empty(),
            authorizer: Authorizer::new(),
            version: version_of(""),
            source: String::new(),
            warnings: Vec::new(),
        }
    }

    fn assemble(loaded: Vec<Loaded>, validated: Validated) -> Result<Self, PolicyError> {
        let mut source = String::new();
        let mut policies = Vec::with_capacity(loaded.len());
        let mut cedar = Vec::with_capacity(loaded.len());
        for one in loaded {
            let text = load::canonical_text(&one)?;
            if !source.is_empty() {
                source.push('\n');
            }
            source.push_str(&text);
            source.push('\n');
            policies.push(PolicyInfo {
                id: one.id,
                reason: one.reason,
                forbid: one.effect == Effect::Forbid,
                text,
            });
            cedar.push(one.policy);
        }
        let positions = policies
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.clone(), i))
            .collect();
        Ok(Self {
            policies,
            positions,
            slicer: Slicer::new(cedar, &validated.actions)?,
            authorizer: Authorizer::new(),
            version: version_of(&source),
            source,
            warnings: validated.warnings,
        })
    }

    /// `sha256:<hex>` of [`source`](Self::source): equal policy sets have equal versions,
    /// whatever their layout and comments.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The canonical Cedar text of the policy set, every policy with its `@id` (for diffs).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The canonical Cedar text of the policy whose id is `id` (the parsed `@id`, not its
    /// escaped spelling), if the set has one: two policies are the same exactly when their
    /// texts are equal, whatever their layout and comments.
    pub fn policy_text(&self, id: &str) -> Option<&str> {
        let position = *self.positions.get(id)?;
        self.policies.get(position).map(|p| p.text.as_str())
    }

    /// How many policies the set has.
    pub fn policy_count(&self) -> usize {
        self.policies.len()
    }

    /// The validator's warnings that did not stop loading (e.g. confusable identifiers).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Decides one request. Fails closed: a policy that cannot be evaluated, or a request that
    /// cannot be put to Cedar, denies. So does a request whose actor, action or resource is
    /// not a valid name (`zt_contract::names`); the action is decided folded to lower case and
    /// the resource normalized to NFC, as the server records them.
    ///
    /// Only the policies whose scope admits the request are evaluated (see the crate README,
    /// *Speed*); the answer is the one Cedar gives over the whole set. The same as
    /// `self.scope(request).decide()`.
    pub fn decide(&self, request: &PolicyRequest<'_>) -> PolicyDecision {
        self.scope(request).decide()
    }

    /// Scopes `request`: checks its names and finds the policies whose scope admits it (a few
    /// hash lookups), so a caller can tell a costly decision
    /// ([`Scoped::len`]) before making it ([`Scoped::decide`]) without the lookups being done
    /// twice. To decide on another thread, scope against an `Arc` with [`Scoped::new`] and
    /// call [`Scoped::into_owned`].
    pub fn scope<'r>(&self, request: &PolicyRequest<'r>) -> Scoped<'r, &Self> {
        Scoped::new(self, request)
    }

    /// The index ([`Scoped`] looks the request up in it).
    pub(crate) fn slicer(&self) -> &Slicer {
        &self.slicer
    }

    /// Decides `request` (its names canonical) by evaluating `buckets`, the buckets of
    /// `slice` whose scope admits it: the rest of a decision once [`Scoped`] has scoped it.
    pub(crate) fn decide_in(
        &self,
        names: &Names,
        request: &PolicyRequest<'_>,
        slice: &Slice,
        buckets: &[BucketId],
    ) -> PolicyDecision {
        if buckets.is_empty() {
            return PolicyDecision::deny(REASON_NOT_ALLOWED);
        }
        let context = match context::build(
            request.context,
            request.action,
            unix_seconds(request.request_time),
        ) {
            Ok(context) => context,
            Err(e) => return PolicyDecision::deny(format!("request denied: {e}")),
        };
        let (cedar_request, entities) =
            match entities::build(names, request, &slice.action, &slice.entities, context) {
                Ok(built) => built,
                Err(e) => return PolicyDecision::deny(format!("request denied: {e}")),
            };
        let mut outcome = Outcome::default();
        for &id in buckets {
            match self.slicer.bucket(id) {
                Some(bucket) => {
                    self.evaluate(&mut outcome, &cedar_request, &bucket.policies, &entities);
                }
                None => outcome
                    .errors
                    .push((usize::MAX, "a bucket of the policy index is missing".into())),
            }
        }
        self.explain(outcome)
    }

    fn evaluate(
        &self,
        outcome: &mut Outcome,
        request: &Request,
        set: &PolicySet,
        entities: &Entities,
    ) {
        let response = self.authorizer.is_authorized(request, set, entities);
        for id in response.diagnostics().reason() {
            match self.positions.get(id.as_ref() as &str) {
                Some(&position) => outcome.satisfied.push(position),
                None => outcome.errors.push((
                    usize::MAX,
                    format!("policy `{id}` is not in the policy set"),
                )),
            }
        }
        for error in response.diagnostics().errors() {
            let AuthorizationError::PolicyEvaluationError(failed) = error;
            let position = self
                .positions
                .get(failed.policy_id().as_ref() as &str)
                .copied()
                .unwrap_or(usize::MAX);
            outcome.errors.push((position, error.to_string()));
        }
    }

    fn explain(&self, mut outcome: Outcome) -> PolicyDecision {
        let id = |position: usize| {
            self.policies
                .get(position)
                .map_or("unknown", |p| p.id.as_str())
                .to_string()
        };
        if !outcome.errors.is_empty() {
            outcome.errors.sort();
            // A policy filed under two action keys that both admit the action (`action in
            // [Action::"a.*", Action::"a.b"]`) is evaluated twice: its error counts once.
            outcome.errors.dedup();
            let mut failed: Vec<usize> = outcome.errors.iter().map(|(p, _)| *p).collect();
            failed.dedup();
            let reason = format!(
                "policy `{}` failed to evaluate, so the request is denied (fail closed)",
                id(failed.first().copied().unwrap_or(usize::MAX))
            );
            return PolicyDecision {
                allowed: false,
                reason,
                determining_policies: failed.into_iter().map(id).collect(),
                errors: outcome.errors.into_iter().map(|(_, e)| e).collect(),
            };
        }
        outcome.satisfied.sort_unstable();
        outcome.satisfied.dedup();
        let is_forbid = |p: &usize| self.policies.get(*p).is_some_and(|info| info.forbid);
        let forbids: Vec<usize> = outcome
            .satisfied
            .iter()
            .copied()
            .filter(is_forbid)
            .collect();
        let (allowed, deciding) = if forbids.is_empty() {
            (true, outcome.satisfied)
        } else {
            (false, forbids)
        };
        let Some(info) = deciding.first().and_then(|&p| self.policies.get(p)) else {
            return PolicyDecision::deny(REASON_NOT_ALLOWED);
        };
        let reason = match &info.reason {
            Some(reason) => reason.clone(),
            None if allowed => format!("allowed by policy `{}`", info.id),
            None => format!("denied by policy `{}`", info.id),
        };
        PolicyDecision {
            allowed,
            reason,
            determining_policies: deciding.into_iter().map(id).collect(),
            errors: Vec::new(),
        }
    }
}

/// What the evaluated slices said: positions of satisfied policies, and errors with the
/// position of the policy that failed (`usize::MAX` if unknown).
#[derive(Debug, Default)]
struct Outcome {
    satisfied: Vec<usize>,
    errors: Vec<(usize, String)>,
}

fn version_of(source: &str) -> String {
    let d = digest::digest(&digest::SHA256, source.as_bytes());
    format!("sha256:{}", hex::encode(d.as_ref()))
}

/// Whole seconds since the Unix epoch (negative before it), saturating.
fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
