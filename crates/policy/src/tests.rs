//! Policy files: what parses, what is refused and how the error names it.

use super::*;

fn parse(text: &str) -> Result<Policy, PolicyError> {
    Policy::parse(text, Path::new("p.toml"))
}

const HEAD: &str = "schema = 1\nname = \"t\"\nversion = \"1\"\n";

fn purpose(id: &str, flow: &str, basis: &str, fields: &str) -> String {
    format!("\n[[purpose]]\nid = \"{id}\"\nflow = \"{flow}\"\nlegal_basis = \"{basis}\"\nfields = [{fields}]\n")
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(text) {
        Err(PolicyError::Invalid { problems, .. }) => problems,
        other => panic!("expected problems, got {other:?}"),
    }
}

#[test]
fn shipped_default_policy_is_valid() {
    let p = parse(include_str!("../../../etc/policy.toml")).unwrap();
    let status = p.purpose_for_flow(Flow::Status).unwrap();
    assert!(status.fields.contains(&Field::OnlineStatus));
    assert!(!p
        .purposes_for(Field::MacAddress)
        .contains(&"device_activation"));
}

#[test]
fn flows_map_to_purposes_and_consent_defaults_to_opt_in() {
    let text = format!(
        "{HEAD}{}{}",
        purpose("binding", "activation", "contract", "\"model\""),
        purpose("ux", "usage_statistics", "dpv:Consent", "\"uptime\"")
    );
    let p = parse(&text).unwrap();
    assert_eq!(p.purpose_for_flow(Flow::Activation).unwrap().id, "binding");
    assert!(p.purpose("ux").unwrap().needs_opt_in());
    assert!(!p.purpose("binding").unwrap().needs_opt_in());
    assert!(p.purpose_for_flow(Flow::Alarm).is_none());
}

#[test]
fn unknown_field_is_refused_with_line() {
    let text = format!(
        "{HEAD}{}",
        purpose("x", "activation", "contract", "\"shoe_size\"")
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("shoe_size") && err.contains("line 9"), "{err}");
}

#[test]
fn unknown_basis_is_refused_with_line() {
    let text = format!("{HEAD}{}", purpose("x", "activation", "vibes", "\"model\""));
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("vibes") && err.contains("line 8"), "{err}");
}

#[test]
fn each_semantic_problem_is_named_with_its_line() {
    let text = format!(
        "{HEAD}never_leave = [\"wifi_ssid\"]\n{}{}{}runs_without_consent = true\n",
        purpose("a", "activation", "contract", "\"wifi_ssid\""),
        purpose("a", "telemetry", "contract", "\"uptime\""),
        purpose("c", "usage_statistics", "consent", "\"uptime\"")
    );
    let found = problems(&text);
    let lines: Vec<usize> = found.iter().map(|p| p.line).collect();
    assert_eq!(lines, vec![10, 13, 23], "{found:?}");
    assert!(found[0].message.contains("never_leave"));
    assert!(found[1].message.contains("listed twice"));
    assert!(found[2].message.contains("based on consent"));
}

#[test]
fn one_purpose_per_flow_and_no_built_in_flows() {
    let text = format!(
        "{HEAD}{}{}{}",
        purpose("a", "activation", "contract", "\"model\""),
        purpose("b", "activation", "contract", "\"model\""),
        purpose("c", "consent_receipt", "contract", "")
    );
    let found = problems(&text);
    assert!(
        found[0].message.contains("already claimed by purpose `a`"),
        "{found:?}"
    );
    assert!(found[1].message.contains("built in"), "{found:?}");
}

#[test]
fn transforms_must_fit_their_field() {
    let text = format!(
        "{HEAD}{}transforms = {{ model = \"truncate_ip\", uptime = \"redact\" }}\n",
        purpose("a", "activation", "contract", "\"model\"")
    );
    let found = problems(&text);
    assert_eq!(found.len(), 2, "{found:?}");
}
