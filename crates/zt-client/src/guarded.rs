//! Protected work behind a decision: [`Allowed`] is the proof of an `allow`, and the only
//! thing that unlocks the work. It has no public constructor: the one way to get it is a
//! complete, consistent allow from [`ControlPlane::authorize`], so a deny or an error cannot
//! reach the work by construction.

use std::future::Future;

use zt_contract::{Decision, DecisionRequest, DecisionResponse};

use crate::{ClientError, ControlPlane};

/// Proof that the control plane allowed one request: the allow decision, checked (status,
/// `ok`, hash, request id echo, and the signature when keys are pinned).
#[derive(Debug)]
pub struct Allowed {
    decision: DecisionResponse,
}

impl Allowed {
    /// The allow decision, with its audit evidence.
    pub fn decision(&self) -> &DecisionResponse {
        &self.decision
    }

    /// The allow decision, giving up the proof.
    pub fn into_decision(self) -> DecisionResponse {
        self.decision
    }
}

/// What the control plane said: an [`Allowed`] proof, or a deny.
#[derive(Debug)]
pub enum Authorization {
    /// Allowed: the proof unlocks the work.
    Allowed(Allowed),
    /// Denied, with the decision (reason and audit evidence).
    Denied(DecisionResponse),
}

/// Why protected work did not run.
#[derive(Debug)]
pub enum SkipCause {
    /// The control plane denied it.
    Denied,
    /// No valid decision was obtained (fail closed).
    Error(ClientError),
}

/// The outcome of a guarded call.
#[derive(Debug)]
pub enum Guarded<T> {
    /// Allowed, and the work ran.
    Executed {
        /// The allow decision.
        decision: DecisionResponse,
        /// What the work returned.
        result: T,
    },
    /// The work did not run.
    Skipped {
        /// The deny decision, when there was one.
        decision: Option<DecisionResponse>,
        /// Why it was skipped.
        cause: SkipCause,
    },
}

impl<T> Guarded<T> {
    /// True when the protected work did not run (`executionSkipped` in other SDKs).
    pub fn execution_skipped(&self) -> bool {
        matches!(self, Guarded::Skipped { .. })
    }

    /// The decision, when one was obtained.
    pub fn decision(&self) -> Option<&DecisionResponse> {
        match self {
            Guarded::Executed { decision, .. } => Some(decision),
            Guarded::Skipped { decision, .. } => decision.as_ref(),
        }
    }
}

impl ControlPlane {
    /// Asks for a decision; an allow comes back as the [`Allowed`] proof. A deny is
    /// `Ok(Authorization::Denied)`, anything incomplete an error.
    pub async fn authorize(&self, request: &DecisionRequest) -> Result<Authorization, ClientError> {
        let decision = self.decide(request).await?;
        Ok(match decision.decision {
            Decision::Allow => Authorization::Allowed(Allowed { decision }),
            Decision::Deny => Authorization::Denied(decision),
        })
    }

    /// Runs `work` only on an allow, handing it the [`Allowed`] proof (work that calls
    /// further protected code passes the proof on). On a deny or an error `work` is dropped
    /// unrun.
    pub async fn guarded<T, F, Fut>(&self, request: &DecisionRequest, work: F) -> Guarded<T>
    where
        F: FnOnce(Allowed) -> Fut,
        Fut: Future<Output = T>,
    {
        match self.authorize(request).await {
            Ok(Authorization::Allowed(allowed)) => {
                let decision = allowed.decision.clone();
                let result = work(allowed).await;
                Guarded::Executed { decision, result }
            }
            Ok(Authorization::Denied(decision)) => Guarded::Skipped {
                decision: Some(decision),
                cause: SkipCause::Denied,
            },
            Err(e) => Guarded::Skipped {
                decision: None,
                cause: SkipCause::Error(e),
            },
        }
    }

    /// [`ControlPlane::guarded`] for work that does not need the proof.
    pub async fn guarded_call<T, F, Fut>(&self, request: &DecisionRequest, work: F) -> Guarded<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.guarded(request, |_allowed| work()).await
    }
}
