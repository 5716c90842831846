//! The credential throttle's store ([`quiver_store::Throttle`]): GCRA per key, exact
//! under concurrency, shared by every handle on the database.

use std::time::Duration;

use crate::TestDatabase;

const HOUR: Duration = Duration::from_secs(3600);

/// Every check of the throttle on one fresh database.
pub async fn run(ts: &TestDatabase) {
    let t = ts.db.throttle.clone();

    // A burst, then refused, with the wait until one more is allowed.
    for i in 1..=3 {
        let c = t.charge("k:burst", HOUR, 3).await.unwrap();
        assert!(c.allowed, "attempt {i} of a burst of 3");
        assert_eq!(c.standing, i);
    }
    let refused = t.charge("k:burst", HOUR, 3).await.unwrap();
    assert!(!refused.allowed, "a fourth attempt in a burst of 3");
    assert!(
        refused.retry_after > HOUR - Duration::from_secs(60) && refused.retry_after <= HOUR,
        "refused for about one period: {:?}",
        refused.retry_after
    );
    // A refused attempt is not counted: the wait does not grow.
    let again = t.charge("k:burst", HOUR, 3).await.unwrap();
    assert!(!again.allowed && again.retry_after <= refused.retry_after);

    // Keys are independent.
    assert!(t.charge("k:other", HOUR, 3).await.unwrap().allowed);

    // Forgiving one period allows exactly one more; forgiving all, a whole burst.
    t.forgive("k:burst", Some(HOUR)).await.unwrap();
    assert!(t.charge("k:burst", HOUR, 3).await.unwrap().allowed);
    assert!(!t.charge("k:burst", HOUR, 3).await.unwrap().allowed);
    t.forgive("k:burst", None).await.unwrap();
    assert_eq!(t.charge("k:burst", HOUR, 3).await.unwrap().standing, 1);
    // Forgiving an unknown key is no error.
    t.forgive("k:never", Some(HOUR)).await.unwrap();
    t.forgive("k:never", None).await.unwrap();

    // A short period drains.
    let short = Duration::from_millis(200);
    assert!(t.charge("k:short", short, 1).await.unwrap().allowed);
    assert!(!t.charge("k:short", short, 1).await.unwrap().allowed);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(t.charge("k:short", short, 1).await.unwrap().allowed);

    // Concurrent attempts on one key: exactly the burst gets through.
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let t = t.clone();
            tokio::spawn(async move { t.charge("k:race", HOUR, 5).await.unwrap().allowed })
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        allowed += usize::from(task.await.unwrap());
    }
    assert_eq!(allowed, 5, "24 concurrent attempts against a burst of 5");

    // Another handle (another node, or this one restarted) sees the same counts.
    let other = ts.open_another().await;
    assert!(
        !other
            .throttle
            .charge("k:race", HOUR, 5)
            .await
            .unwrap()
            .allowed,
        "a lockout is shared by every handle and survives a restart"
    );
}
