//! Counted downloads: a client counts once per entry, version and window, across
//! batches and handles; daily series split at UTC midnight; namespace sums, the most
//! downloaded, user agents in aggregate, pruning, and the popularity refresh's state.

use jiff::Timestamp;
use quiver_model::{EntryKey, Kind};
use quiver_store::downloads::{day_of, AgentDay, DownloadHit, PopularityWritten};
use quiver_store::Database;

use crate::store::{key, new_entry};

const HOUR_MS: i64 = 3_600_000;

fn hit(entry: &EntryKey, version: &str, client: &str, at: Timestamp) -> DownloadHit {
    DownloadHit {
        entry: entry.clone(),
        version: version.into(),
        client: client.into(),
        at,
    }
}

pub async fn run(db: &Database, other: &Database) {
    let s = &db.store;
    let d = &db.downloads;
    for name in ["fmt", "http"] {
        s.create_entry(new_entry(Kind::Module, "alice", name, name))
            .await
            .unwrap();
    }
    let fmt = key(Kind::Module, "alice", "fmt");
    let http = key(Kind::Module, "alice", "http");
    let gone = key(Kind::Module, "alice", "missing");
    // 23:30 UTC, just before midnight.
    let t0: Timestamp = "2026-12-03T23:30:00Z".parse().unwrap();
    let day0 = day_of(t0);
    let later = |ms: i64| Timestamp::from_millisecond(t0.as_millisecond() + ms).unwrap();

    // Ten clients, each twice in the batch and again in a later batch of the same hour.
    let mut hits: Vec<DownloadHit> = (0..10)
        .map(|c| hit(&fmt, "1.0.0", &format!("c{c}"), t0))
        .collect();
    hits.extend((0..10).map(|c| hit(&fmt, "1.0.0", &format!("c{c}"), later(60_000))));
    hits.push(hit(&gone, "1.0.0", "c0", t0));
    let agents = vec![AgentDay {
        day: day0,
        agent: "quiver/0.1".into(),
        count: 21,
    }];
    assert_eq!(
        d.record_downloads(hits, agents, HOUR_MS).await.unwrap(),
        10,
        "a client counts once per window; a missing entry's hit is dropped"
    );
    // The same clients 40 minutes later (past midnight, same window) on another handle.
    let again: Vec<DownloadHit> = (0..10)
        .map(|c| hit(&fmt, "1.0.0", &format!("c{c}"), later(40 * 60_000)))
        .collect();
    assert_eq!(
        other
            .downloads
            .record_downloads(again, vec![], HOUR_MS)
            .await
            .unwrap(),
        0,
        "within the window on another handle"
    );
    // Another version counts apart; an hour after the first count, a client counts again.
    let next = vec![
        hit(&fmt, "1.1.0", "c0", later(40 * 60_000)),
        hit(&fmt, "1.0.0", "c0", later(HOUR_MS)),
        hit(&http, "2.0.0", "c0", later(HOUR_MS)),
    ];
    assert_eq!(d.record_downloads(next, vec![], HOUR_MS).await.unwrap(), 3);

    let days = d.download_days(&fmt, day0, day0 + 1).await.unwrap();
    let got: Vec<(i32, &str, u64)> = days
        .iter()
        .map(|x| (x.day - day0, x.version.as_str(), x.count))
        .collect();
    assert_eq!(
        got,
        [(0, "1.0.0", 10), (1, "1.0.0", 1), (1, "1.1.0", 1)],
        "daily series split at UTC midnight"
    );
    assert!(d
        .download_days(&fmt, day0 + 2, day0 + 9)
        .await
        .unwrap()
        .is_empty());
    assert!(d
        .download_days(&gone, day0, day0 + 1)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        d.download_totals(&fmt).await.unwrap(),
        [("1.0.0".to_string(), 11), ("1.1.0".to_string(), 1)]
    );
    let ns = d
        .namespace_download_days("alice", day0, day0 + 1)
        .await
        .unwrap();
    assert_eq!(
        ns.iter()
            .map(|(k, day, n)| (k.name.as_str(), day - day0, *n))
            .collect::<Vec<_>>(),
        [("fmt", 0, 10), ("fmt", 1, 2), ("http", 1, 1)]
    );
    assert!(d
        .namespace_download_days("bob", day0, day0 + 1)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        d.most_downloaded(day0, day0 + 1, 10).await.unwrap(),
        [(fmt.clone(), 12), (http.clone(), 1)]
    );
    assert_eq!(
        d.most_downloaded(day0 + 1, day0 + 1, 1).await.unwrap(),
        [(fmt.clone(), 2)]
    );
    assert_eq!(
        d.agent_days(day0, day0).await.unwrap(),
        [AgentDay {
            day: day0,
            agent: "quiver/0.1".into(),
            count: 21
        }]
    );

    // Pruning forgets clients counted before the cut; they count again.
    let pruned = d
        .prune_download_clients(later(HOUR_MS).as_millisecond())
        .await
        .unwrap();
    assert_eq!(
        pruned, 10,
        "c1..c9 of 1.0.0 (counted at t0) and c0 of 1.1.0 (t0 + 40 min)"
    );
    let c1 = vec![hit(&fmt, "1.0.0", "c1", later(HOUR_MS / 2))];
    assert_eq!(d.record_downloads(c1, vec![], HOUR_MS).await.unwrap(), 1);

    // The popularity refresh's state: inputs list downloaded and refreshed entries.
    let inputs = d.popularity_inputs(day0, day0 + 1).await.unwrap();
    assert_eq!(
        inputs
            .iter()
            .map(|i| (i.entry.name.as_str(), i.counted, i.prior))
            .collect::<Vec<_>>(),
        [("fmt", 13, None), ("http", 1, None)]
    );
    d.save_popularity(vec![
        PopularityWritten {
            entry: fmt.clone(),
            prior: 0.25,
            score: 0.3,
            counted: 13,
        },
        PopularityWritten {
            entry: gone.clone(),
            prior: 0.0,
            score: 0.1,
            counted: 1,
        },
    ])
    .await
    .unwrap();
    // Days with no downloads: a refreshed entry is still listed (so its score can fall back).
    let inputs = d.popularity_inputs(day0 + 5, day0 + 6).await.unwrap();
    assert_eq!(inputs.len(), 1);
    assert_eq!(inputs[0].entry, fmt);
    assert_eq!(inputs[0].counted, 0);
    assert_eq!(
        (inputs[0].prior, inputs[0].written),
        (Some(0.25), Some(0.3))
    );
}
