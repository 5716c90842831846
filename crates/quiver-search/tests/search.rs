//! Behaviour of the search index over a small store built in each test.

mod common;

use common::{fixture, names, package, top, Fixture};

use quiver_model::{EntryKey, EntryPatch, ErrorCode, Kind, NewEntry, Status, Visibility};
use quiver_search::{SearchIndex, SearchQuery, Sort};
use quiver_store::Store;

fn packages() -> Vec<NewEntry> {
    vec![
        package("pypi", "requests", "Python HTTP for Humans.", 0.9),
        package(
            "pypi",
            "requests-oauthlib",
            "OAuthlib authentication support for Requests.",
            0.7,
        ),
        package("pypi", "Django", "A high-level Python web framework.", 0.8),
        package(
            "pypi",
            "scikit-learn",
            "A set of python modules for machine learning",
            0.8,
        ),
        package("pypi", "beautifulsoup4", "Screen-scraping library", 0.8),
        package("pypi", "PyYAML", "YAML parser and emitter for Python", 0.85),
        package(
            "pypi",
            "elasticsearch",
            "Python client for Elasticsearch",
            0.7,
        ),
        package(
            "npm",
            "express",
            "Fast, unopinionated, minimalist web framework",
            0.9,
        ),
        package("npm", "expresss", "temp test", 0.3),
        package("npm", "chalk", "Terminal string styling done right", 0.92),
        package("npm", "js-yaml", "YAML 1.2 parser and serializer", 0.9),
        package(
            "npm",
            "@types/node",
            "TypeScript definitions for node",
            0.95,
        ),
        package("npm", "left-pad", "String left pad", 0.5),
    ]
}

#[tokio::test]
async fn finds_names_exactly_split_prefixed_and_misspelt() {
    let f = fixture(packages()).await;
    let ix = &f.index;
    assert_eq!(top(ix, "requests")[0], "pypi/requests");
    assert_eq!(top(ix, "django")[0], "pypi/Django");
    assert_eq!(top(ix, "@types/node")[0], "npm/@types/node");
    // split / joined
    for q in [
        "scikit learn",
        "scikitlearn",
        "scikit-learn",
        "Scikit_Learn",
    ] {
        assert_eq!(top(ix, q)[0], "pypi/scikit-learn", "{q}");
    }
    // prefix
    assert_eq!(top(ix, "beautifulsoup")[0], "pypi/beautifulsoup4");
    assert_eq!(top(ix, "elasticsear")[0], "pypi/elasticsearch");
    // typos
    assert_eq!(top(ix, "reqeusts")[0], "pypi/requests");
    assert_eq!(top(ix, "djnago")[0], "pypi/Django");
    let ex = top(ix, "expresss");
    assert!(ex.iter().take(2).any(|n| n == "npm/express"), "{ex:?}");
    // descriptive
    assert_eq!(top(ix, "terminal string styling")[0], "npm/chalk");
    assert_eq!(
        top(ix, "python client for elasticsearch")[0],
        "pypi/elasticsearch"
    );
    let yaml = top(ix, "yaml parser");
    assert!(yaml[..2].contains(&"pypi/PyYAML".to_string()), "{yaml:?}");
    assert!(yaml[..2].contains(&"npm/js-yaml".to_string()), "{yaml:?}");
    // nothing at all
    assert!(top(ix, "zzzzqqqq").is_empty());
}

#[tokio::test]
async fn private_and_unlisted_never_leak() {
    let mut es = packages();
    let mut private = package("acme", "secret-yaml", "YAML parser, internal", 0.99);
    private.visibility = Some(Visibility::Private);
    private.kind = Kind::Tool;
    private.name = "secretYaml".into();
    let mut unlisted = package(
        "pypi",
        "hidden-yaml",
        "YAML parser nobody should list",
        0.99,
    );
    unlisted.visibility = Some(Visibility::Unlisted);
    es.push(private);
    es.push(unlisted);
    let f = fixture(es).await;
    let ix = &f.index;

    let anon = ix
        .search(&SearchQuery {
            facets: true,
            ..SearchQuery::text("yaml parser")
        })
        .unwrap();
    let n = names(&anon);
    assert!(
        !n.iter()
            .any(|x| x.contains("secret") || x.contains("hidden")),
        "{n:?}"
    );
    assert_eq!(anon.total, 2);
    let facets = anon.facets.unwrap();
    assert!(!facets.namespace.iter().any(|c| c.value == "acme"));
    assert!(!facets.kind.iter().any(|c| c.value == "tool"));
    assert_eq!(
        facets.kind,
        vec![quiver_search::FacetCount {
            value: "package".into(),
            count: 2
        }]
    );

    // A typo of the private name suggests nothing private to an anonymous caller.
    let r = ix.search(&SearchQuery::text("secretyamk")).unwrap();
    assert_eq!(r.total, 0);
    assert_eq!(r.suggestion, None);
    // Browsing everything does not show them either.
    let all = ix
        .search(&SearchQuery {
            limit: 100,
            ..SearchQuery::default()
        })
        .unwrap();
    assert_eq!(all.total, 13);
    assert!(!names(&all)
        .iter()
        .any(|x| x.contains("secret") || x.contains("hidden")));

    // With rights on the namespace, the private entry appears (the unlisted one never).
    let member = ix
        .search(&SearchQuery {
            private_namespaces: vec!["acme".into()],
            facets: true,
            ..SearchQuery::text("yaml parser")
        })
        .unwrap();
    assert_eq!(names(&member)[0], "acme/secretYaml");
    assert_eq!(member.total, 3);
    assert!(member
        .facets
        .unwrap()
        .namespace
        .iter()
        .any(|c| c.value == "acme" && c.count == 1));
    let r = ix
        .search(&SearchQuery {
            private_namespaces: vec!["acme".into()],
            ..SearchQuery::text("secretyamk")
        })
        .unwrap();
    assert_eq!(names(&r), ["acme/secretYaml"]);
    // Rights on another namespace do not help.
    let other = ix
        .search(&SearchQuery {
            private_namespaces: vec!["pypi".into()],
            ..SearchQuery::text("yaml parser")
        })
        .unwrap();
    assert_eq!(other.total, 2);

    // A caller who reads every private entry (admin, moderator) finds it in hits, total,
    // facets and suggestions, with no namespace named; the unlisted one still never.
    let admin = ix
        .search(&SearchQuery {
            all_private: true,
            facets: true,
            ..SearchQuery::text("yaml parser")
        })
        .unwrap();
    assert_eq!(names(&admin)[0], "acme/secretYaml");
    assert_eq!(admin.total, 3);
    assert!(!names(&admin).iter().any(|x| x.contains("hidden")));
    let facets = admin.facets.unwrap();
    assert!(facets
        .namespace
        .iter()
        .any(|c| c.value == "acme" && c.count == 1));
    assert!(facets
        .kind
        .iter()
        .any(|c| c.value == "tool" && c.count == 1));
    let r = ix
        .search(&SearchQuery {
            all_private: true,
            ..SearchQuery::text("secretyamk")
        })
        .unwrap();
    assert_eq!(names(&r), ["acme/secretYaml"]);
    let all = ix
        .search(&SearchQuery {
            all_private: true,
            limit: 100,
            ..SearchQuery::default()
        })
        .unwrap();
    assert_eq!(all.total, 14);
}

#[tokio::test]
async fn becoming_unlisted_or_private_removes_the_document() {
    let f = fixture(packages()).await;
    assert_eq!(top(&f.index, "chalk")[0], "npm/chalk");
    let key = EntryKey::new(Kind::Package, "npm", "chalk");
    f.store
        .update_entry(
            &key,
            EntryPatch {
                visibility: Some(Visibility::Unlisted),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let cu = f.index.catch_up(&f.store).await.unwrap();
    assert!(cu.applied_events >= 1);
    assert!(!top(&f.index, "chalk").contains(&"npm/chalk".to_string()));
    assert_eq!(f.index.stats().docs, 12);

    f.store
        .update_entry(
            &key,
            EntryPatch {
                visibility: Some(Visibility::Private),
                description: Some("Terminal colours".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    f.index.catch_up(&f.store).await.unwrap();
    assert!(!top(&f.index, "chalk").contains(&"npm/chalk".to_string()));
    let r = f
        .index
        .search(&SearchQuery {
            private_namespaces: vec!["npm".into()],
            ..SearchQuery::text("terminal colours")
        })
        .unwrap();
    assert_eq!(names(&r), ["npm/chalk"]);
    assert_eq!(f.index.stats().docs, 13);
    // An update is one document, not two.
    assert_eq!(f.index.stats().docs, f.store.stats().await.unwrap().entries);
}

#[tokio::test]
async fn statuses_default_to_published_and_deprecated() {
    let mut es = packages();
    let mut draft = package("npm", "yaml-draft", "YAML parser draft", 0.9);
    draft.status = Some(Status::Draft);
    let mut dep = package("npm", "yaml-old", "YAML parser, old", 0.9);
    dep.status = Some(Status::Deprecated);
    let mut arch = package("npm", "yaml-archived", "YAML parser, archived", 0.9);
    arch.status = Some(Status::Archived);
    es.extend([draft, dep, arch]);
    let f = fixture(es).await;
    let r = f.index.search(&SearchQuery::text("yaml parser")).unwrap();
    let n = names(&r);
    assert!(n.contains(&"npm/yaml-old".to_string()));
    assert!(
        !n.iter()
            .any(|x| x.ends_with("draft") || x.ends_with("archived")),
        "{n:?}"
    );
    let r = f
        .index
        .search(&SearchQuery {
            statuses: vec![Status::Draft, Status::Archived],
            facets: true,
            ..SearchQuery::text("yaml parser")
        })
        .unwrap();
    let mut n = names(&r);
    n.sort();
    assert_eq!(n, ["npm/yaml-archived", "npm/yaml-draft"]);
    let st = r.facets.unwrap().status;
    assert_eq!(st.len(), 2);
    assert!(st.iter().all(|c| c.count == 1));
}

#[tokio::test]
async fn filters_and_sorts() {
    let mut es = packages();
    let mut tool = package("acme", "text.yamlParse", "Parse YAML text", 0.1);
    tool.kind = Kind::Tool;
    tool.category = Some("text".into());
    tool.tags = vec!["yaml".into(), "parsing".into()];
    es.push(tool);
    let f = fixture(es).await;
    let ix = &f.index;
    let q = |f: &dyn Fn(&mut SearchQuery)| {
        let mut q = SearchQuery::text("yaml");
        f(&mut q);
        names(&ix.search(&q).unwrap())
    };
    assert_eq!(q(&|q| q.kinds = vec![Kind::Tool]), ["acme/text.yamlParse"]);
    assert_eq!(q(&|q| q.namespaces = vec!["npm".into()]), ["npm/js-yaml"]);
    assert_eq!(
        q(&|q| q.categories = vec!["text".into()]),
        ["acme/text.yamlParse"]
    );
    assert_eq!(
        q(&|q| q.tags = vec!["parsing".into()]),
        ["acme/text.yamlParse"]
    );
    assert!(q(&|q| q.tags = vec!["nope".into()]).is_empty());
    // Filters without text browse.
    let r = ix
        .search(&SearchQuery {
            namespaces: vec!["pypi".into()],
            sort: Sort::Name,
            facets: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.total, 7);
    assert_eq!(
        names(&r),
        [
            "pypi/beautifulsoup4",
            "pypi/Django",
            "pypi/elasticsearch",
            "pypi/PyYAML",
            "pypi/requests",
            "pypi/requests-oauthlib",
            "pypi/scikit-learn"
        ]
    );
    let facets = r.facets.unwrap();
    assert_eq!(facets.namespace.len(), 1);
    let pop = q(&|q| q.sort = Sort::Popularity);
    assert_eq!(pop[0], "npm/js-yaml");
    assert_eq!(pop.last().unwrap(), "acme/text.yamlParse");
    // Recent: the last updated first (timestamps are in milliseconds).
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    f.store
        .update_entry(
            &EntryKey::new(Kind::Package, "pypi", "requests"),
            EntryPatch {
                description: Some("Python HTTP for Humans, now with YAML".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    ix.catch_up(&f.store).await.unwrap();
    assert_eq!(q(&|q| q.sort = Sort::Recent)[0], "pypi/requests");
    // Facets of tags and categories.
    let r = ix
        .search(&SearchQuery {
            facets: true,
            ..SearchQuery::text("yaml")
        })
        .unwrap();
    let fc = r.facets.unwrap();
    assert!(fc.tags.iter().any(|c| c.value == "parsing" && c.count == 1));
    assert!(fc
        .category
        .iter()
        .any(|c| c.value == "text" && c.count == 1));
    // Highlights mark the matched words.
    let r = ix
        .search(&SearchQuery {
            highlight: true,
            ..SearchQuery::text("terminal styling")
        })
        .unwrap();
    assert_eq!(
        r.hits[0].highlight.as_deref(),
        Some("<mark>Terminal</mark> string <mark>styling</mark> done right")
    );
}

#[tokio::test]
async fn cursor_pages_through_everything_once() {
    let es: Vec<NewEntry> = (0..45)
        .map(|i| {
            package(
                "npm",
                &format!("yaml-thing-{i}"),
                "a YAML tool",
                0.3 + i as f64 / 100.0,
            )
        })
        .collect();
    let f = fixture(es).await;
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let r = f
            .index
            .search(&SearchQuery {
                limit: 10,
                cursor: cursor.clone(),
                ..SearchQuery::text("yaml")
            })
            .unwrap();
        assert_eq!(r.total, 45);
        seen.extend(names(&r));
        pages += 1;
        match r.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 5);
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 45);
    assert_eq!(seen[0], "npm/yaml-thing-44");

    let bad = f
        .index
        .search(&SearchQuery {
            cursor: Some("not a cursor!".into()),
            ..SearchQuery::text("yaml")
        })
        .unwrap_err();
    assert_eq!(bad.code, ErrorCode::InvalidInput);
    assert_eq!(bad.field.as_deref(), Some("cursor"));
    let big = f
        .index
        .search(&SearchQuery {
            limit: 101,
            ..SearchQuery::text("yaml")
        })
        .unwrap_err();
    assert_eq!(big.field.as_deref(), Some("limit"));
}

#[tokio::test]
async fn suggestion_when_nothing_matches() {
    let f = fixture(packages()).await;
    let r = f.index.search(&SearchQuery::text("elastcsearhc")).unwrap();
    // A typo this far off may still match fuzzily; if nothing matched, a name is offered.
    if r.total == 0 {
        assert_eq!(r.suggestion.as_deref(), Some("elasticsearch"));
    }
    let r = f.index.search(&SearchQuery::text("chalkk zzzzzz")).unwrap();
    assert!(r.total > 0 || r.suggestion.is_some());
    let r = f
        .index
        .search(&SearchQuery::text("qqqqqqqqqqqqqq"))
        .unwrap();
    assert_eq!((r.total, r.suggestion), (0, None));
}

#[tokio::test]
async fn crash_before_catch_up_resumes_from_the_committed_position() {
    let f = fixture(packages()).await;
    let pos = f.index.position();
    assert_eq!(pos, f.store.feed_head().await.unwrap());
    // More writes; the index is dropped (a crash) before it catches up.
    f.store
        .create_entry(package("npm", "kleur", "Terminal colours, tiny", 0.8))
        .await
        .unwrap();
    f.store
        .create_entry(package(
            "pypi",
            "httpx",
            "The next generation HTTP client.",
            0.85,
        ))
        .await
        .unwrap();
    let Fixture {
        _dir,
        store,
        index,
        index_dir,
    } = f;
    drop(index);

    let reopened = SearchIndex::open(&index_dir).unwrap();
    assert_eq!(reopened.position(), pos);
    assert!(top(&reopened, "httpx").is_empty() || top(&reopened, "httpx")[0] != "pypi/httpx");
    let cu = reopened.catch_up(&store).await.unwrap();
    assert_eq!(cu.position, store.feed_head().await.unwrap());
    assert!(cu.applied_events >= 2);
    assert_eq!(top(&reopened, "httpx")[0], "pypi/httpx");
    assert_eq!(top(&reopened, "kleur")[0], "npm/kleur");
    assert_eq!(reopened.stats().docs, 15);
    // Nothing more to do.
    assert_eq!(reopened.catch_up(&store).await.unwrap().applied_events, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_catch_ups_are_serialized() {
    let f = fixture(vec![]).await;
    for e in packages() {
        f.store.create_entry(e).await.unwrap();
    }
    let ix = std::sync::Arc::new(f.index);
    let store = std::sync::Arc::new(f.store);
    let mut handles = Vec::new();
    for _ in 0..4 {
        let (ix, store) = (ix.clone(), store.clone());
        handles.push(tokio::spawn(async move {
            ix.catch_up(&*store).await.unwrap().applied_events
        }));
    }
    let mut applied = 0;
    for h in handles {
        applied += h.await.unwrap();
    }
    assert_eq!(applied as i64, store.feed_head().await.unwrap());
    assert_eq!(ix.stats().docs, 13);
}
