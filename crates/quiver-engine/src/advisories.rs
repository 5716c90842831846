//! Security advisories (seed 004): published and withdrawn by moderators and admins
//! (audited), listed for everyone, and shown in resolution answers for the versions they
//! affect with the next version that fixes them.
//!
//! An advisory names each entry it affects with a semver range and the versions that fix
//! it. Readers see an advisory's affected entries they may read; an advisory all of whose
//! entries are hidden from them is as missing as an absent one.

use quiver_model::{Error, Result};
use quiver_store::advisories::{Advisory, AdvisoryFilter, NewAdvisory};
use quiver_store::AuditDiff;
use semver::{Version as Semver, VersionReq};

use crate::audit::Event;
use crate::{Caller, Registry};

/// Most advisories listed at once.
pub const MAX_LIST: usize = 100;

fn check(new: &NewAdvisory) -> Result<()> {
    let summary = new.summary.trim();
    if summary.is_empty() || summary.len() > 200 {
        return Err(Error::invalid("summary", "1 to 200 characters"));
    }
    if new.description.len() > 20_000 {
        return Err(Error::invalid("description", "at most 20,000 bytes"));
    }
    if new.affected.is_empty() || new.affected.len() > 100 {
        return Err(Error::invalid("affected", "1 to 100 affected entries"));
    }
    for (i, a) in new.affected.iter().enumerate() {
        VersionReq::parse(&a.range).map_err(|e| {
            Error::invalid(
                format!("affected[{i}].range"),
                format!("`{}` is not a semver range ({e})", a.range),
            )
        })?;
        for (j, f) in a.fixed.iter().enumerate() {
            Semver::parse(f).map_err(|_| {
                Error::invalid(
                    format!("affected[{i}].fixed[{j}]"),
                    format!("`{f}` is not a version"),
                )
            })?;
        }
    }
    for (i, alias) in new.aliases.iter().enumerate() {
        let ok = !alias.is_empty()
            && alias.len() <= 100
            && alias
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
        if !ok {
            return Err(Error::invalid(
                format!("aliases[{i}]"),
                "an id such as CVE-2026-1234 or GHSA-xxxx-xxxx-xxxx",
            ));
        }
    }
    if let Some(v) = &new.cvss {
        if !v.starts_with("CVSS:") || v.len() > 200 {
            return Err(Error::invalid("cvss", "a CVSS vector (CVSS:3.1/AV:N/…)"));
        }
    }
    for (field, v, max) in [
        ("advisory_type", &new.advisory_type, 50),
        ("recommendation", &new.recommendation, 5_000),
        ("reporter", &new.reporter, 200),
    ] {
        if v.as_ref().is_some_and(|s| s.len() > max) {
            return Err(Error::invalid(field, format!("at most {max} bytes")));
        }
    }
    Ok(())
}

/// Whether `version` is affected by `a` for the entry `key`, and the versions that fix it.
pub fn affects<'a>(
    a: &'a Advisory,
    key: &quiver_model::EntryKey,
    version: &str,
) -> Option<&'a [String]> {
    let v = Semver::parse(version).ok()?;
    a.affected
        .iter()
        .filter(|x| &x.entry == key)
        .find(|x| VersionReq::parse(&x.range).is_ok_and(|r| r.matches(&v)))
        .map(|x| x.fixed.as_slice())
}

impl Registry {
    /// The advisory with only the affected entries the caller may read (`None`: none).
    async fn visible_advisory(&self, caller: &Caller, mut a: Advisory) -> Result<Option<Advisory>> {
        let mut kept = Vec::with_capacity(a.affected.len());
        for x in a.affected {
            if self.visible_entry(caller, &x.entry).await.is_ok() {
                kept.push(x);
            }
        }
        a.affected = kept;
        Ok((!a.affected.is_empty()).then_some(a))
    }

    /// Publish an advisory (moderators and admins), audited.
    pub async fn create_advisory(&self, caller: &Caller, new: NewAdvisory) -> Result<Advisory> {
        self.require_moderator(caller, "advisories", "advisory.publish")
            .await?;
        check(&new)?;
        let audit = self
            .draft(
                caller,
                Event {
                    action: "advisory.publish",
                    namespace: None,
                    target: format!("advisory {}", new.summary.trim()),
                    denied: None,
                    reason: None,
                    diff: None,
                },
                AuditDiff::Stored,
            )
            .await;
        self.db
            .advisories
            .create_advisory(new, jiff::Timestamp::now(), audit)
            .await
    }

    /// Withdraw an advisory (moderators and admins), with a reason, audited.
    pub async fn withdraw_advisory(
        &self,
        caller: &Caller,
        id: &str,
        reason: String,
    ) -> Result<Advisory> {
        self.require_moderator(caller, id, "advisory.withdraw")
            .await?;
        let reason = reason.trim().to_string();
        if reason.is_empty() || reason.len() > 1_000 {
            return Err(Error::invalid("reason", "1 to 1,000 characters"));
        }
        let audit = self
            .draft(
                caller,
                Event {
                    action: "advisory.withdraw",
                    namespace: None,
                    target: format!("advisory {id}"),
                    denied: None,
                    reason: Some(reason.clone()),
                    diff: None,
                },
                AuditDiff::Stored,
            )
            .await;
        self.db
            .advisories
            .withdraw_advisory(id, reason, jiff::Timestamp::now(), audit)
            .await
    }

    pub async fn advisory(&self, caller: &Caller, id: &str) -> Result<Advisory> {
        let a = self
            .db
            .advisories
            .advisory(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("advisory {id}")))?;
        self.visible_advisory(caller, a)
            .await?
            .ok_or_else(|| Error::not_found(format!("advisory {id}")))
    }

    /// Advisories newest first (filters: an entry, a least severity, withdrawn ones too).
    pub async fn advisories(
        &self,
        caller: &Caller,
        mut f: AdvisoryFilter,
    ) -> Result<Vec<Advisory>> {
        if f.limit == 0 || f.limit > MAX_LIST {
            return Err(Error::invalid(
                "limit",
                format!("must be between 1 and {MAX_LIST}"),
            ));
        }
        if let Some(key) = &f.entry {
            let e = self.visible_entry(caller, key).await?;
            f.entry = Some(e.key());
        }
        let mut out = Vec::new();
        for a in self.db.advisories.advisories(&f).await? {
            if let Some(a) = self.visible_advisory(caller, a).await? {
                out.push(a);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_model::{EntryKey, Kind};
    use quiver_store::advisories::{Affected, Severity};

    fn new() -> NewAdvisory {
        NewAdvisory {
            aliases: vec!["CVE-2026-1234".into()],
            summary: "Prompt injection through titles".into(),
            description: String::new(),
            severity: Severity::High,
            cvss: None,
            advisory_type: None,
            recommendation: None,
            affected: vec![Affected {
                entry: EntryKey::new(Kind::Module, "alice", "fmt"),
                range: ">=1.0.0, <1.2.0".into(),
                fixed: vec!["1.2.0".into()],
            }],
            reporter: None,
            verified: false,
        }
    }

    #[test]
    fn input_is_checked_field_by_field() {
        assert!(check(&new()).is_ok());
        let mut n = new();
        n.affected[0].range = "soon".into();
        assert_eq!(
            check(&n).unwrap_err().field.as_deref(),
            Some("affected[0].range")
        );
        let mut n = new();
        n.affected[0].fixed = vec!["one".into()];
        assert_eq!(
            check(&n).unwrap_err().field.as_deref(),
            Some("affected[0].fixed[0]")
        );
        let mut n = new();
        n.aliases = vec!["<script>".into()];
        assert_eq!(check(&n).unwrap_err().field.as_deref(), Some("aliases[0]"));
        let mut n = new();
        n.summary = " ".into();
        assert_eq!(check(&n).unwrap_err().field.as_deref(), Some("summary"));
        let mut n = new();
        n.affected.clear();
        assert_eq!(check(&n).unwrap_err().field.as_deref(), Some("affected"));
    }

    #[test]
    fn which_versions_are_affected() {
        let n = new();
        let a = Advisory {
            id: "QVR-2026-0001".into(),
            aliases: n.aliases,
            summary: n.summary,
            description: n.description,
            severity: n.severity,
            cvss: None,
            advisory_type: "vulnerability".into(),
            recommendation: None,
            affected: n.affected,
            reporter: None,
            verified: false,
            published_at: jiff::Timestamp::UNIX_EPOCH,
            withdrawn_at: None,
            withdrawn_reason: None,
        };
        let fmt = EntryKey::new(Kind::Module, "alice", "fmt");
        assert_eq!(affects(&a, &fmt, "1.1.0"), Some(&["1.2.0".to_string()][..]));
        assert_eq!(affects(&a, &fmt, "1.2.0"), None);
        assert_eq!(affects(&a, &fmt, "0.9.0"), None);
        let other = EntryKey::new(Kind::Module, "alice", "io");
        assert_eq!(affects(&a, &other, "1.1.0"), None);
    }
}
