//! The sandbox profile an allow grants to an execution broker: read from the annotations of
//! the permits that decided (`@sandbox_write("/srv/out")`, ...; docs/BROKER.md). A permit
//! without sandbox annotations grants the default profile; several deciding permits grant only
//! what they all grant, so no permit is widened by another. zt-policy refuses a permit whose
//! grant does not read when the set loads, with the same parser; an error here still denies.

use zt_contract::sandbox::ProfileError;
use zt_contract::SandboxProfile;
use zt_policy::PolicyEngine;

/// The profile `policies` (the deciding permits of an allow) grant.
pub(crate) fn grant(
    engine: &PolicyEngine,
    policies: &[String],
) -> Result<SandboxProfile, ProfileError> {
    let profiles = engine
        .permit_annotations(policies)
        .iter()
        .map(SandboxProfile::from_annotations)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SandboxProfile::intersection(&profiles).unwrap_or_else(SandboxProfile::default_profile))
}
