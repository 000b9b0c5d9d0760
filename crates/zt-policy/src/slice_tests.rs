use std::collections::BTreeSet;
use std::str::FromStr;

use cedar_policy::PolicySet;

use super::*;

fn policies(texts: &[&str]) -> Vec<Policy> {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Policy::parse(Some(cedar_policy::PolicyId::new(format!("p{i}"))), *t).unwrap()
        })
        .collect()
}

fn ids(set: &PolicySet) -> Vec<String> {
    let mut ids: Vec<String> = set.policies().map(|p| p.id().to_string()).collect();
    ids.sort();
    ids
}

#[test]
fn policies_are_indexed_by_their_action_scope() {
    let p = |t: &str| Policy::from_str(t).unwrap();
    assert_eq!(
        index_keys(&p("permit(principal, action, resource);")),
        Keys::Always
    );
    assert_eq!(
        index_keys(&p(r#"permit(principal, action in Action::"*", resource);"#)),
        Keys::Always
    );
    assert_eq!(
        index_keys(&p(
            r#"permit(principal, action == Action::"a.b", resource);"#
        )),
        Keys::Exact("a.b".into())
    );
    assert_eq!(
        index_keys(&p(
            r#"permit(principal, action in [Action::"a.*", Action::"b"], resource);"#
        )),
        Keys::Member(vec!["a.*".into(), "b".into()])
    );
    assert_eq!(
        index_keys(&p(
            r#"permit(principal, action in [Action::"a.*", Action::"*"], resource);"#
        )),
        Keys::Always
    );
}

fn in_scope(
    slicer: &Slicer,
    action: &str,
    actor: &str,
    groups: &[&str],
    resource: &str,
) -> Vec<String> {
    let names = Names::get().unwrap();
    let slice = slicer.slice(names, action).unwrap();
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    let mut found: Vec<String> = slicer
        .buckets(&slice, actor, &groups, resource)
        .into_iter()
        .flat_map(|id| ids(&slicer.bucket(id).unwrap().policies))
        .collect();
    found.sort();
    found
}

#[test]
fn a_slice_holds_only_what_can_apply() {
    let slicer = Slicer::new(
        policies(&[
            r#"permit(principal, action, resource);"#,
            r#"permit(principal, action == Action::"aws.iam.create_user", resource);"#,
            r#"permit(principal, action == Action::"aws.iam", resource);"#,
            r#"forbid(principal, action in Action::"aws.*", resource);"#,
            r#"forbid(principal, action in Action::"aws.iam.*", resource);"#,
            r#"forbid(principal, action in Action::"gcp.*", resource);"#,
            r#"permit(principal, action in Action::"aws.iam.create_user", resource);"#,
            r#"permit(principal, action in [Action::"gcp.*", Action::"aws.iam.*"], resource);"#,
        ]),
        &BTreeSet::new(),
    )
    .unwrap();
    let names = Names::get().unwrap();
    assert_eq!(
        in_scope(&slicer, "aws.iam.create_user", "a", &[], "r"),
        ["p0", "p1", "p3", "p4", "p6", "p7"]
    );
    let slice = slicer.slice(names, "aws.iam.create_user").unwrap();
    assert_eq!(slice.entities.len(), 1);
    assert_eq!(
        in_scope(&slicer, "aws.s3.list", "a", &[], "r"),
        ["p0", "p3"]
    );
    assert_eq!(in_scope(&slicer, "other", "a", &[], "r"), ["p0"]);
    assert_eq!(slicer.cached(), 3);
    // Cached: the same slice again.
    let slice = slicer.slice(names, "other").unwrap();
    let again = slicer.slice(names, "other").unwrap();
    assert!(Arc::ptr_eq(&slice, &again));
}

#[test]
fn within_an_action_policies_are_found_by_principal_group_and_resource() {
    let slicer = Slicer::new(
        policies(&[
            r#"permit(principal == Agent::"a", action == Action::"docs.read", resource);"#,
            r#"permit(principal == Agent::"b", action == Action::"docs.read", resource);"#,
            r#"permit(principal in Group::"g", action in Action::"docs.*", resource);"#,
            r#"permit(principal, action == Action::"docs.read", resource == Resource::"h");"#,
            r#"forbid(principal, action, resource == Resource::"h") when { context has source };"#,
            r#"permit(principal == Agent::"a", action == Action::"docs.write", resource);"#,
        ]),
        &BTreeSet::new(),
    )
    .unwrap();
    assert_eq!(in_scope(&slicer, "docs.read", "a", &[], "x"), ["p0"]);
    assert_eq!(
        in_scope(&slicer, "docs.read", "b", &["g"], "h"),
        ["p1", "p2", "p3", "p4"]
    );
    assert_eq!(in_scope(&slicer, "docs.write", "c", &["g"], "x"), ["p2"]);
    assert!(in_scope(&slicer, "docs.read", "c", &["f"], "x").is_empty());
}

#[test]
fn the_cache_is_bounded_in_bytes() {
    let slicer = Slicer::new(
        policies(&[r#"permit(principal, action in Action::"a.*", resource);"#]),
        &BTreeSet::new(),
    )
    .unwrap();
    let names = Names::get().unwrap();
    let most = SLICE_CACHE_BYTES / SLICE_BASE_BYTES;
    for i in 0..(most * 2 + 10) {
        slicer.slice(names, &format!("a.{i}")).unwrap();
    }
    assert!(slicer.cached() <= most, "{}", slicer.cached());
    assert!(slicer.cached_bytes() <= SLICE_CACHE_BYTES);
}

#[test]
fn the_action_is_in_the_named_groups_only() {
    let mentioned: BTreeSet<String> = ["x.*".to_string(), "x.y.*".to_string()].into();
    let slicer = Slicer::new(
        policies(&[
            r#"permit(principal, action in Action::"a.*", resource);"#,
            r#"permit(principal, action, resource) when { action in Action::"x.y.*" };"#,
        ]),
        &mentioned,
    )
    .unwrap();
    let names = Names::get().unwrap();
    let parents = |action: &str| {
        let slice = slicer.slice(names, action).unwrap();
        let entity = slice.entities.get(&slice.action).unwrap();
        let mut parents: Vec<String> = entity
            .clone()
            .into_inner()
            .2
            .into_iter()
            .map(|uid| uid.id().unescaped().to_string())
            .collect();
        parents.sort();
        parents
    };
    assert_eq!(parents("a.b.c.d.e"), ["*", "a.*"]);
    assert_eq!(parents("x.y.z"), ["*", "x.*", "x.y.*"]);
    assert_eq!(parents("q"), ["*"]);
}
