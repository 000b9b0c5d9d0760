//! `guarded_call`: run protected work only on an `allow`.

use std::future::Future;

use zt_contract::{Decision, DecisionRequest, DecisionResponse};

use crate::{ClientError, ControlPlane};

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
    /// Asks for a decision and runs `work` only if it is `allow`.
    pub async fn guarded_call<T, F, Fut>(&self, request: &DecisionRequest, work: F) -> Guarded<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        match self.decide(request).await {
            Ok(decision) if decision.decision == Decision::Allow => {
                let result = work().await;
                Guarded::Executed { decision, result }
            }
            Ok(decision) => Guarded::Skipped {
                decision: Some(decision),
                cause: SkipCause::Denied,
            },
            Err(e) => Guarded::Skipped {
                decision: None,
                cause: SkipCause::Error(e),
            },
        }
    }
}
