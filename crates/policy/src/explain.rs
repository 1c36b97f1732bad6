//! The device's privacy label: what it sends, for what, on which basis, and what never leaves —
//! as text for people and as JSON for apps.

use serde_json::json;

use super::consent::Ledger;
use super::{Field, KeyScope, LegalBasis, Policy, Purpose};

/// What per-purpose pseudonyms do not hide: the wire, not the payload, links purposes.
const BROKER_LINKS: &str = "every purpose's messages travel over one MQTT connection, with one \
client id and one client certificate, so the broker's operator can link them all to this \
device whatever pseudonyms their topics carry";

fn stance(p: &Purpose, ledger: Option<&Ledger>) -> String {
    let rule = if p.needs_opt_in() {
        "only with the owner's consent"
    } else if p.legal_basis == LegalBasis::LegitimateInterest {
        "unless the owner objects"
    } else {
        "needed to provide the service"
    };
    match ledger.map(|l| l.permits(p)) {
        Some(true) => format!("{rule}; runs now"),
        Some(false) => format!("{rule}; stopped now"),
        None => rule.to_owned(),
    }
}

/// Fields no purpose carries, or that the policy forbids outright.
pub fn never_sent(policy: &Policy) -> Vec<Field> {
    Field::ALL
        .iter()
        .copied()
        .filter(|f| !matches!(f, Field::ConsentRecord | Field::ErasureRecord))
        .filter(|f| policy.never_leave.contains(f) || policy.purposes_for(*f).is_empty())
        .collect()
}

pub fn text(policy: &Policy, ledger: Option<&Ledger>) -> String {
    let mut out = format!(
        "Privacy label: {} (policy version {})\n",
        policy.name, policy.version
    );
    if let Some(src) = &policy.source {
        out += &format!("Written from: {} {}\n", src.document, src.date);
    }
    if let Some(c) = &policy.controller {
        out += &format!("Controller: {}", c.name);
        for part in [&c.contact, &c.jurisdiction, &c.policy_url]
            .into_iter()
            .flatten()
        {
            out += &format!(", {part}");
        }
        out += "\n";
    }
    let (sent, documented): (Vec<&Purpose>, Vec<&Purpose>) =
        policy.purposes.iter().partition(|p| p.flow.is_some());
    out += "\nWhat this device sends\n";
    for p in sent {
        out += &format!(
            "\n  {} — flow {} ({}, {}), {}\n",
            p.id,
            p.flow.map(|f| f.name()).unwrap_or_default(),
            p.legal_basis.name(),
            p.legal_basis.gdpr(),
            stance(p, ledger)
        );
        if !p.description.is_empty() {
            out += &format!("    why: {}\n", p.description);
        }
        let fields: Vec<String> = p
            .fields
            .iter()
            .map(|f| match p.transforms.get(f) {
                Some(t) => format!("{f} ({t})"),
                None => f.to_string(),
            })
            .collect();
        out += &format!("    sends: {}\n", fields.join(", "));
        if p.pseudonym_key == KeyScope::Purpose {
            out += "    pseudonyms: a key of this purpose alone; its ids match no other purpose's, but the broker's operator can still link its messages to the rest (see below)\n";
        }
        if let Some(r) = p.retention {
            out += &format!(
                "    waits on the device at most: {}\n",
                humantime::format_duration(r)
            );
        }
        if let Some(c) = &p.cite {
            out += &format!("    from: {} — {}\n", c.file, c.passage);
        }
    }
    out += "\n  consent_management, erasure_confirmation — built in (legal_obligation): receipts of\n    consent changes and confirmations of erasure, so the owner's choices can be proven\n";
    if !documented.is_empty() {
        out += "\nWhat the vendor's policy also says (processing in its apps and cloud; this device sends nothing for it)\n";
        for p in documented {
            out += &format!(
                "\n  {} ({}, {})\n",
                p.id,
                p.legal_basis.name(),
                p.legal_basis.gdpr()
            );
            if !p.description.is_empty() {
                out += &format!("    {}\n", p.description);
            }
            if let Some(c) = &p.cite {
                out += &format!("    from: {} — {}\n", c.file, c.passage);
            }
        }
    }
    out += &format!("\nWhat the broker sees\n  {BROKER_LINKS}.\n");
    out += "\nNever sent\n";
    for f in never_sent(policy) {
        let how = if policy.never_leave.contains(&f) {
            "forbidden by the policy"
        } else {
            "no purpose carries it"
        };
        out += &format!("  {f:<24} {} — {how}\n", f.description());
    }
    out
}

pub fn json(policy: &Policy, ledger: Option<&Ledger>) -> serde_json::Value {
    json!({
        "policy": { "name": policy.name, "version": policy.version, "source": policy.source },
        "controller": policy.controller,
        "broker_can_link_purposes": BROKER_LINKS,
        "sends": policy.purposes.iter().map(|p| json!({
            "purpose": p.id,
            "flow": p.flow,
            "purpose_category": p.dpv,
            "legal_basis": p.legal_basis.dpv(),
            "gdpr": p.legal_basis.gdpr(),
            "needs_consent": p.needs_opt_in(),
            "owner_can_stop": p.needs_opt_in() || p.legal_basis.owner_can_stop(),
            "active": ledger.map(|l| l.permits(p)),
            "description": p.description,
            "fields": p.fields.iter().map(|f| json!({
                "field": f,
                "vocabulary": f.vocabulary_id(),
                "transform": p.transforms.get(f),
            })).collect::<Vec<_>>(),
            "pseudonym_key": p.pseudonym_key,
            "retention": p.retention.map(|r| humantime::format_duration(r).to_string()),
            "cite": p.cite,
        })).collect::<Vec<_>>(),
        "never_sent": never_sent(policy).iter().map(|f| json!({
            "field": f,
            "vocabulary": f.vocabulary_id(),
            "forbidden": policy.never_leave.contains(f),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn label_names_what_leaves_and_what_never_does() {
        let policy = Policy::parse(
            "schema = 1\nname = \"Acme\"\nversion = \"3\"\nnever_leave = [\"wifi_ssid\"]\n\
             [[purpose]]\nid = \"bind\"\nflow = \"activation\"\nlegal_basis = \"contract\"\nfields = [\"serial_number\", \"ip_address\"]\ntransforms = { ip_address = \"truncate_ip\" }\n",
            Path::new("t"),
        )
        .unwrap();
        let t = text(&policy, None);
        assert!(t.contains("ip_address (truncate_ip)"), "{t}");
        assert!(
            t.contains("wifi_ssid") && t.contains("forbidden by the policy"),
            "{t}"
        );
        let j = json(&policy, None);
        assert_eq!(j["sends"][0]["legal_basis"], "dpv:Contract");
        let never: Vec<&str> = j["never_sent"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert!(never.contains(&"mac_address") && never.contains(&"wifi_ssid"));
        assert!(!never.contains(&"serial_number"));
    }
}
