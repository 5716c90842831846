//! quiver's accounts vocabulary and access policy, with no storage and no HTTP.
//!
//! - [`secrets`]: password hashing (argon2id, PHC strings), API token generation (`qvr_`
//!   prefix, 256 random bits, shown once) and the token's stored form (sha256).
//! - [`policy`]: scopes, namespace roles, site roles, token name patterns, the
//!   [`Principal`] making a request, and [`authorize`] — the one function that decides
//!   every read and write. The engine resolves the principal (from a bearer token) and
//!   asks `authorize` before touching the store; routes never decide access themselves.

pub mod device;
pub mod policy;
pub mod secrets;

pub use policy::{
    authorize, may_report_telemetry, Account, Action, Decision, NamePattern, NamespaceRole,
    Principal, Scope, SiteRole, Target,
};

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use quiver_model::Visibility::{self, Private, Public, Unlisted};

    use super::*;

    fn account(name: &str, site: Option<SiteRole>, ns: &[(&str, NamespaceRole)]) -> Account {
        Account {
            id: 1,
            name: name.into(),
            site_role: site,
            memberships: ns
                .iter()
                .map(|(n, r)| (n.to_string(), *r))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    fn user(ns: &[(&str, NamespaceRole)]) -> Principal {
        Principal::User(account("u", None, ns))
    }

    fn token(ns: &[(&str, NamespaceRole)], scopes: &[Scope], pattern: Option<&str>) -> Principal {
        Principal::Token {
            account: account("u", None, ns),
            token_id: 7,
            scopes: scopes.iter().copied().collect::<BTreeSet<_>>(),
            pattern: pattern.map(|p| NamePattern::new(p).unwrap()),
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum D {
        Allow,
        Hidden,
        E401,
        E403,
    }

    fn d(x: Decision) -> D {
        match x {
            Decision::Allow => D::Allow,
            Decision::Hidden => D::Hidden,
            Decision::Unauthenticated(_) => D::E401,
            Decision::Forbidden(_) => D::E403,
        }
    }

    use NamespaceRole::{Maintainer, Owner, Viewer};

    /// The policy as a table: principal, action, target visibility → decision. All targets
    /// are the entry `acme/text.csv` unless the action is namespace-wide.
    #[test]
    fn policy_table() {
        use Action::*;
        let anon = Principal::Anonymous;
        let open = Principal::Open;
        let boot = Principal::BootstrapAdmin;
        let stranger = user(&[("other", Owner)]);
        let viewer = user(&[("acme", Viewer)]);
        let maint = user(&[("acme", Maintainer)]);
        let owner = user(&[("acme", Owner)]);
        let moder = Principal::User(account("m", Some(SiteRole::Moderator), &[]));
        let admin = Principal::User(account("a", Some(SiteRole::Admin), &[]));
        let t_all = token(&[("acme", Owner)], &[Scope::Admin], None);
        let t_new = token(&[("acme", Owner)], &[Scope::PublishNew], None);
        let t_upd = token(&[("acme", Owner)], &[Scope::PublishUpdate], None);
        let t_yank = token(&[("acme", Owner)], &[Scope::Yank], None);
        let t_own = token(&[("acme", Owner)], &[Scope::ManageOwners], None);
        let t_read = token(&[("acme", Owner)], &[Scope::ReadPrivate], None);
        let t_pat = token(
            &[("acme", Owner)],
            &[Scope::PublishUpdate, Scope::ReadPrivate],
            Some("text.*"),
        );
        let t_pat_other = token(
            &[("acme", Owner)],
            &[Scope::PublishUpdate, Scope::ReadPrivate],
            Some("img.*"),
        );
        // A token cannot exceed its user's rights.
        let t_viewer_all = token(&[("acme", Viewer)], &[Scope::Admin], None);

        #[rustfmt::skip]
        let table: Vec<(&str, &Principal, Action, Visibility, D)> = vec![
            ("anon reads public", &anon, Read, Public, D::Allow),
            ("anon reads unlisted", &anon, Read, Unlisted, D::Allow),
            ("anon reads private", &anon, Read, Private, D::Hidden),
            ("anon lists public", &anon, List, Public, D::Allow),
            ("anon lists unlisted", &anon, List, Unlisted, D::Hidden),
            ("anon creates", &anon, CreateEntry, Public, D::E401),
            ("anon publishes", &anon, Publish, Public, D::E401),
            ("anon publishes private", &anon, Publish, Private, D::Hidden),
            ("anon yanks", &anon, Yank, Public, D::E401),
            ("open creates", &open, CreateEntry, Private, D::Allow),
            ("open publishes", &open, Publish, Public, D::Allow),
            ("open reads private", &open, Read, Private, D::Hidden),
            ("boot reads private", &boot, Read, Private, D::Allow),
            ("boot administers", &boot, Administer, Public, D::Allow),
            ("stranger reads public", &stranger, Read, Public, D::Allow),
            ("stranger reads private", &stranger, Read, Private, D::Hidden),
            ("stranger creates", &stranger, CreateEntry, Public, D::E403),
            ("stranger publishes", &stranger, Publish, Public, D::E403),
            ("stranger yanks private", &stranger, Yank, Private, D::Hidden),
            ("viewer reads private", &viewer, Read, Private, D::Allow),
            ("viewer lists private", &viewer, List, Private, D::Allow),
            ("viewer lists unlisted", &viewer, List, Unlisted, D::Hidden),
            ("viewer creates", &viewer, CreateEntry, Public, D::E403),
            ("viewer publishes private", &viewer, Publish, Private, D::E403),
            ("viewer yanks", &viewer, Yank, Public, D::E403),
            ("maintainer creates", &maint, CreateEntry, Private, D::Allow),
            ("maintainer publishes", &maint, Publish, Private, D::Allow),
            ("maintainer yanks", &maint, Yank, Unlisted, D::Allow),
            ("maintainer manages", &maint, ManageMembers, Public, D::E403),
            ("owner manages", &owner, ManageMembers, Public, D::Allow),
            ("owner administers", &owner, Administer, Public, D::E403),
            ("moderator reads private", &moder, Read, Private, D::Allow),
            ("moderator yanks", &moder, Yank, Private, D::Allow),
            ("moderator publishes", &moder, Publish, Public, D::E403),
            ("admin publishes anywhere", &admin, Publish, Private, D::Allow),
            ("admin administers", &admin, Administer, Public, D::Allow),
            ("admin lists unlisted", &admin, List, Unlisted, D::Hidden),
            ("token admin scope publishes", &t_all, Publish, Private, D::Allow),
            ("token admin scope cannot administer w/o site admin", &t_all, Administer, Public, D::E403),
            ("token publish-new creates", &t_new, CreateEntry, Public, D::Allow),
            ("token publish-new publishes", &t_new, Publish, Public, D::E403),
            ("token publish-update publishes", &t_upd, Publish, Public, D::Allow),
            ("token publish-update creates", &t_upd, CreateEntry, Public, D::E403),
            ("token publish-update on private w/o read-private", &t_upd, Publish, Private, D::Hidden),
            ("token yank yanks", &t_yank, Yank, Public, D::Allow),
            ("token yank publishes", &t_yank, Publish, Public, D::E403),
            ("token manage-owners manages", &t_own, ManageMembers, Public, D::Allow),
            ("token manage-owners yanks", &t_own, Yank, Public, D::E403),
            ("token read-private reads", &t_read, Read, Private, D::Allow),
            ("token read-private publishes", &t_read, Publish, Private, D::E403),
            ("token w/o read-private reads private", &t_new, Read, Private, D::Hidden),
            ("token any scope reads public", &t_yank, Read, Public, D::Allow),
            ("patterned token publishes match", &t_pat, Publish, Public, D::Allow),
            ("patterned token reads private match", &t_pat, Read, Private, D::Allow),
            ("patterned token publishes mismatch", &t_pat_other, Publish, Public, D::E403),
            ("patterned token reads private mismatch", &t_pat_other, Read, Private, D::Hidden),
            ("viewer's admin-scope token publishes", &t_viewer_all, Publish, Public, D::E403),
            ("viewer's admin-scope token reads private", &t_viewer_all, Read, Private, D::Allow),
        ];
        let mut failures = vec![];
        for (label, p, action, vis, want) in table {
            let target = if action == Administer {
                Target::site()
            } else {
                Target::entry("acme", "text.csv", vis)
            };
            let got = d(authorize(p, action, &target));
            if got != want {
                failures.push(format!("{label}: expected {want:?}, got {got:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn namespace_wide_actions_and_patterns() {
        let owner_pat = token(&[("acme", Owner)], &[Scope::ManageOwners], Some("text.*"));
        assert!(matches!(
            authorize(
                &owner_pat,
                Action::ManageMembers,
                &Target::namespace("acme")
            ),
            Decision::Forbidden(_)
        ));
        let owner = user(&[("acme", Owner)]);
        assert!(authorize(&owner, Action::ManageMembers, &Target::namespace("acme")).is_allowed());
        assert!(!authorize(&owner, Action::ManageMembers, &Target::namespace("beta")).is_allowed());
    }

    #[test]
    fn only_owners_delete() {
        let entry = Target::entry("acme", "text.csv", Visibility::Public);
        assert!(authorize(&user(&[("acme", Owner)]), Action::Delete, &entry).is_allowed());
        for role in [Maintainer, Viewer] {
            assert!(matches!(
                authorize(&user(&[("acme", role)]), Action::Delete, &entry),
                Decision::Forbidden(_)
            ));
        }
        assert!(matches!(
            authorize(&user(&[("beta", Owner)]), Action::Delete, &entry),
            Decision::Forbidden(_)
        ));
        assert!(matches!(
            authorize(
                &token(&[("acme", Owner)], &[Scope::PublishUpdate], None),
                Action::Delete,
                &entry
            ),
            Decision::Forbidden(_)
        ));
        assert!(authorize(
            &token(&[("acme", Owner)], &[Scope::Yank], None),
            Action::Delete,
            &entry
        )
        .is_allowed());
        assert!(matches!(
            authorize(&Principal::Anonymous, Action::Delete, &entry),
            Decision::Unauthenticated(_)
        ));
    }

    #[test]
    fn decisions_become_engine_errors() {
        use quiver_model::ErrorCode;
        let e = Decision::Hidden.check(&"tool/acme/x").unwrap_err();
        assert_eq!(e, quiver_model::Error::not_found("tool/acme/x"));
        let e = Decision::Unauthenticated("sign in".into())
            .check(&"x")
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthorized);
        let e = Decision::Forbidden("no".into()).check(&"x").unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
        assert!(Decision::Allow.check(&"x").is_ok());
    }

    #[test]
    fn private_grants_for_search() {
        let u = user(&[("acme", Viewer), ("beta", Owner)]);
        assert_eq!(u.private_namespaces(), vec!["acme", "beta"]);
        assert!(token(&[("acme", Owner)], &[Scope::Yank], None)
            .private_namespaces()
            .is_empty());
        assert!(
            token(&[("acme", Owner)], &[Scope::ReadPrivate], Some("a*"))
                .private_namespaces()
                .is_empty(),
            "a patterned token sees only some names, so it gets no namespace-wide grant"
        );
        assert_eq!(
            token(&[("acme", Owner)], &[Scope::ReadPrivate], None).private_namespaces(),
            vec!["acme"]
        );
        assert!(Principal::BootstrapAdmin.reads_all_private());
        assert!(!u.reads_all_private());
    }

    #[test]
    fn globs() {
        let cases = [
            ("text.*", "text.csvParse", true),
            ("text.*", "text.", true),
            ("text.*", "image.crop", false),
            ("*", "anything", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*.csv*", "text.csvParse", true),
            ("*a*b*", "xxaxxbxx", true),
            ("*a*b", "xxaxxbxx", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ];
        for (p, s, want) in cases {
            assert_eq!(NamePattern::new(p).unwrap().matches(s), want, "{p} ~ {s}");
        }
        assert!(NamePattern::new("").is_err());
        assert!(NamePattern::new("a b").is_err());
    }

    #[test]
    fn words_round_trip() {
        for s in Scope::ALL {
            assert_eq!(s.as_str().parse::<Scope>().unwrap(), *s);
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
        assert!("publish_new".parse::<Scope>().is_err());
        assert!(NamespaceRole::Owner > NamespaceRole::Maintainer);
        assert!(NamespaceRole::Maintainer > NamespaceRole::Viewer);
        assert_eq!(
            "moderator".parse::<SiteRole>().unwrap(),
            SiteRole::Moderator
        );
    }
}
