//! The privacy policy: which fields may leave the device, for which purpose, on which legal
//! basis, transformed how — and which never leave.
//!
//! Default deny: a flow no purpose claims sends nothing, and a field a purpose does not list is
//! dropped from its records. The policy is pure data; [`Gate`] applies it.

#![deny(unsafe_code)]
#![deny(unreachable_pub)]

pub mod consent;
pub mod explain;
mod gate;
mod pseudonym;
pub mod record;
pub mod secrets;
pub mod transform;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

pub use camagent_wire::vocabulary::{Field, Flow, LegalBasis, Transform};
pub use gate::{Admitted, Gate, Refusal};
pub use pseudonym::{PseudonymKey, KEY_LEN};
pub use secrets::Secrets;

/// The policy file format version this agent reads.
pub const SCHEMA: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The TOML parser's message: unknown keys, fields, flows or bases, with line and column.
    #[error("policy file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("policy file {}:\n{}", path.display(), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

/// One semantic error, with the line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Which key pseudonyms of a purpose are made with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyScope {
    /// The device's one pseudonym key: the same pseudonym across purposes.
    #[default]
    Device,
    /// A key of this purpose alone: its pseudonyms cannot be linked to other purposes'.
    Purpose,
}

/// The published document a policy is written from.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceDocument {
    pub document: String,
    #[serde(default)]
    pub date: String,
    #[serde(default)]
    pub file: String,
}

/// Who answers for the processing, as the source document names them: consent receipts carry
/// it (ISO/IEC TS 27560 and Kantara receipts name the controller, jurisdiction and policy).
/// What the document does not say is left out, not guessed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Controller {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jurisdiction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_url: Option<String>,
}

/// Where in the source document a purpose comes from.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Citation {
    pub file: String,
    pub passage: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Policy {
    pub schema: u32,
    pub name: String,
    pub version: String,
    pub source: Option<SourceDocument>,
    pub controller: Option<Controller>,
    /// Fields no purpose may carry, whatever else the file says.
    pub never_leave: BTreeSet<Field>,
    pub purposes: Vec<Purpose>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Purpose {
    pub id: String,
    /// The agent flow this purpose governs. A purpose without one documents processing the
    /// agent does not do (a web service's, say); the gate never uses it.
    pub flow: Option<Flow>,
    pub dpv: Option<String>,
    pub legal_basis: LegalBasis,
    /// False when the purpose needs the owner's opt-in before anything of it leaves.
    pub runs_without_consent: bool,
    pub description: String,
    pub fields: BTreeSet<Field>,
    pub transforms: BTreeMap<Field, Transform>,
    pub pseudonym_key: KeyScope,
    /// How long records of this purpose may wait on the device to be sent.
    #[serde(serialize_with = "ser_duration")]
    pub retention: Option<Duration>,
    pub cite: Option<Citation>,
}

fn ser_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
        None => s.serialize_none(),
    }
}

impl Purpose {
    /// Whether the owner must opt in before this purpose sends anything.
    pub fn needs_opt_in(&self) -> bool {
        !self.runs_without_consent
    }
}

/// Whether `id` is reserved for one of the agent's built-in flows.
fn is_reserved_id(id: &str) -> bool {
    Flow::ALL
        .iter()
        .filter_map(|flow| flow.built_in())
        .any(|built_in| built_in.id == id)
}

// The file as written, with spans for error lines.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    schema: Spanned<u32>,
    name: String,
    version: String,
    #[serde(default)]
    source: Option<SourceDocument>,
    #[serde(default)]
    controller: Option<Controller>,
    #[serde(default)]
    never_leave: Vec<Spanned<Field>>,
    #[serde(default, rename = "purpose")]
    purposes: Vec<RawPurpose>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPurpose {
    id: Spanned<String>,
    #[serde(default)]
    flow: Option<Spanned<Flow>>,
    #[serde(default)]
    dpv: Option<Spanned<String>>,
    legal_basis: Spanned<LegalBasis>,
    #[serde(default)]
    runs_without_consent: Option<Spanned<bool>>,
    #[serde(default)]
    description: String,
    fields: Vec<Spanned<Field>>,
    #[serde(default)]
    transforms: BTreeMap<Field, Spanned<Transform>>,
    #[serde(default)]
    pseudonym_key: KeyScope,
    #[serde(default)]
    retention: Option<Spanned<String>>,
    #[serde(default)]
    cite: Option<Citation>,
}

/// serde stops at the first error; a policy author wants them all. The head and each
/// `[[purpose]]` are parsed on their own (blank lines in front keep the line numbers), so one
/// error per part is found. `None` when the split finds nothing (a syntax error, or a layout
/// it cannot follow): the caller reports the first error as it is.
fn every_toml_error(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Purposes {
        #[serde(rename = "purpose")]
        #[allow(dead_code)]
        purposes: Vec<RawPurpose>,
    }
    let mut starts: Vec<usize> = text
        .match_indices("[[purpose]]")
        .map(|(at, _)| at)
        .filter(|&at| at == 0 || text.as_bytes()[at - 1] == b'\n')
        .collect();
    starts.push(text.len());
    let padded =
        |from: usize, to: usize| "\n".repeat(text[..from].matches('\n').count()) + &text[from..to];
    let mut errors = Vec::new();
    if let Err(e) = toml::from_str::<RawPolicy>(&text[..starts[0]]) {
        errors.push(e.to_string());
    }
    for part in starts.windows(2) {
        if let Err(e) = toml::from_str::<Purposes>(&padded(part[0], part[1])) {
            errors.push(e.to_string());
        }
    }
    (!errors.is_empty()).then(|| {
        errors
            .iter()
            .map(|e| e.trim_end())
            .collect::<Vec<_>>()
            .join("\n")
    })
}

impl Policy {
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates; every semantic problem is reported with its line.
    pub fn parse(text: &str, path: &Path) -> Result<Self, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| PolicyError::Parse {
            path: path.to_owned(),
            message: every_toml_error(text).unwrap_or_else(|| e.to_string().trim_end().to_owned()),
        })?;
        let line = |start: usize| text[..start.min(text.len())].matches('\n').count() + 1;
        let mut problems = Vec::new();
        let mut problem = |start: usize, message: String| {
            problems.push(Problem {
                line: line(start),
                message,
            })
        };

        if *raw.schema.get_ref() != SCHEMA {
            problem(
                raw.schema.span().start,
                format!(
                    "schema {} is not supported; this agent reads schema {SCHEMA}",
                    raw.schema.get_ref()
                ),
            );
        }
        let never_leave: BTreeSet<Field> = raw.never_leave.iter().map(|f| *f.get_ref()).collect();
        let mut ids = BTreeMap::new();
        let mut flows = BTreeMap::new();
        let mut purposes = Vec::new();
        for p in raw.purposes {
            let id = p.id.get_ref().clone();
            let at = p.id.span().start;
            if let Some(first) = ids.insert(id.clone(), line(at)) {
                problem(at, format!("purpose `{id}` is listed twice (first on line {first}); merge the two [[purpose]] tables"));
            }
            if is_reserved_id(&id) {
                problem(at, format!("purpose id `{id}` is reserved for the agent's built-in flow; choose another id"));
            }
            let flow = p.flow.as_ref().map(|f| *f.get_ref());
            if let Some(spanned) = &p.flow {
                let flow = *spanned.get_ref();
                if flow.is_built_in() {
                    problem(spanned.span().start, format!("flow `{flow}` is built in (the agent governs it itself); remove this purpose"));
                } else if let Some(other) = flows.insert(flow, id.clone()) {
                    problem(spanned.span().start, format!("flow `{flow}` is already claimed by purpose `{other}`; one purpose per flow"));
                }
            }
            let basis = *p.legal_basis.get_ref();
            let runs_without_consent = match &p.runs_without_consent {
                Some(v) if *v.get_ref() && basis == LegalBasis::Consent => {
                    problem(v.span().start, format!("purpose `{id}` is based on consent but says it runs without consent; set runs_without_consent = false or name another legal basis"));
                    false
                }
                Some(v) => *v.get_ref(),
                None => basis != LegalBasis::Consent,
            };
            if let Some(dpv) = &p.dpv {
                if !dpv.get_ref().starts_with("dpv:") {
                    problem(dpv.span().start, format!("`dpv` must be a DPV purpose such as \"dpv:ServiceProvision\", not {:?}", dpv.get_ref()));
                }
            }
            let mut fields = BTreeSet::new();
            for f in &p.fields {
                let field = *f.get_ref();
                if never_leave.contains(&field) {
                    problem(f.span().start, format!("purpose `{id}` lists `{field}`, which never_leave forbids; remove one of the two"));
                }
                if !fields.insert(field) {
                    problem(
                        f.span().start,
                        format!("purpose `{id}` lists `{field}` twice"),
                    );
                }
            }
            let mut transforms = BTreeMap::new();
            for (field, t) in &p.transforms {
                let transform = *t.get_ref();
                if !fields.contains(field) {
                    problem(t.span().start, format!("transform for `{field}`, which purpose `{id}` does not carry; add it to `fields` or remove the transform"));
                } else if !transform.applies_to(*field) {
                    problem(
                        t.span().start,
                        format!("transform `{transform}` does not apply to `{field}`"),
                    );
                }
                transforms.insert(*field, transform);
            }
            let retention = p.retention.as_ref().and_then(|r| {
                humantime::parse_duration(r.get_ref())
                    .map_err(|e| {
                        problem(
                            r.span().start,
                            format!(
                                "retention {:?}: {e}; write it like \"7d\" or \"12h\"",
                                r.get_ref()
                            ),
                        )
                    })
                    .ok()
            });
            purposes.push(Purpose {
                id,
                flow,
                dpv: p.dpv.map(|d| d.into_inner()),
                legal_basis: basis,
                runs_without_consent,
                description: p.description,
                fields,
                transforms,
                pseudonym_key: p.pseudonym_key,
                retention,
                cite: p.cite,
            });
        }
        if !problems.is_empty() {
            problems.sort_by_key(|p| p.line);
            return Err(PolicyError::Invalid {
                path: path.to_owned(),
                problems,
            });
        }
        Ok(Policy {
            schema: SCHEMA,
            name: raw.name,
            version: raw.version,
            source: raw.source,
            controller: raw.controller,
            never_leave,
            purposes,
        })
    }

    pub fn purpose(&self, id: &str) -> Option<&Purpose> {
        self.purposes.iter().find(|p| p.id == id)
    }

    /// The purpose that governs `flow`, if the policy lets it run at all.
    pub fn purpose_for_flow(&self, flow: Flow) -> Option<&Purpose> {
        self.purposes.iter().find(|p| p.flow == Some(flow))
    }

    /// The purposes that may carry `field`, for people reading `camagent facts`.
    /// The purposes that may carry `field` off the device: those with an agent flow (a
    /// purpose without one documents the vendor's other processing; nothing leaves for it).
    pub fn purposes_for(&self, field: Field) -> Vec<&str> {
        self.purposes
            .iter()
            .filter(|p| p.flow.is_some() && p.fields.contains(&field))
            .map(|p| p.id.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests;
