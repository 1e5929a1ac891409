//! Validation errors: one [`Violation`] per problem, each naming the JSON path of the field.
//!
//! Messages never repeat the offending value: callers' payloads carry personal data, and an
//! error message travels back to another system.

use serde::Serialize;

/// One problem with one field of an input document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Dotted JSON path of the field, e.g. `agency.timezone` or `files[1].file_value`.
    pub path: String,
    /// What is wrong, in plain words, without the value itself.
    pub problem: String,
}

impl Violation {
    pub fn new(path: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

/// Every problem found in one document, in the order found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{} invalid field(s): {}", .0.len(), summary(.0))]
pub struct Violations(pub Vec<Violation>);

fn summary(v: &[Violation]) -> String {
    v.iter()
        .map(|v| format!("{} {}", v.path, v.problem))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Violations {
    pub fn push(&mut self, path: impl Into<String>, problem: impl Into<String>) {
        self.0.push(Violation::new(path, problem));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was found, the violations otherwise.
    pub fn into_result<T>(self, value: T) -> Result<T, Violations> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}
