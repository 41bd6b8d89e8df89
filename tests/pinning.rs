//! Pinning: lowering the share leaves pinned shoppers where they are; evacuating a storefront
//! (`evacuated_at`) releases its pins so the bucket decides again.

mod support;

use support::{bucket_of_cookie, unix_now, Backend, Client, ConfigSpec, InProc, Jar};

struct Shopper {
    jar: Jar,
    first: String,
}

impl Shopper {
    fn bucket(&self) -> u16 {
        bucket_of_cookie(self.jar.get("cutover_cohort").expect("cohort cookie"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowering_the_share_keeps_pins_and_evacuation_releases_them() {
    let old = Backend::fast("old").await;
    let new = Backend::fast("new").await;
    let spec = ConfigSpec::new(&old.url(), &new.url(), 50.0).cohort("pinning = true");
    let proxy = InProc::start(&spec).await;
    let client = Client::new(proxy.addr);

    let mut shoppers = Vec::new();
    for _ in 0..600 {
        let mut jar = Jar::new();
        let first = client.get_jar("/", &mut jar).await.backend();
        shoppers.push(Shopper { jar, first });
    }
    for s in &shoppers {
        let expected = if s.bucket() < 5000 { "new" } else { "old" };
        assert_eq!(s.first, expected, "the split assigned by bucket");
    }

    // Share down to 10%: nobody moves, including new-side shoppers whose bucket is now "old".
    proxy.reload(&spec.clone().share(10.0)).await;
    let mut held_by_pin = 0;
    for (i, s) in shoppers.iter_mut().enumerate() {
        let now = client.get_jar("/checkout", &mut s.jar).await.backend();
        assert_eq!(now, s.first, "shopper {i} moved when the share went down");
        if now == "new" && s.bucket() >= 1000 {
            held_by_pin += 1;
        }
    }
    assert!(
        held_by_pin > 100,
        "pins held {held_by_pin} shoppers the share alone would move"
    );

    // Evacuate `new`: its pins are released and the bucket decides at 10%. `old` pins stay.
    let evac = spec
        .clone()
        .share(10.0)
        .store_extra("new", &format!("evacuated_at = {}", unix_now()));
    proxy.reload(&evac).await;
    let mut moved = 0;
    for (i, s) in shoppers.iter_mut().enumerate() {
        let now = client.get_jar("/", &mut s.jar).await.backend();
        let expected = match s.first.as_str() {
            "old" => "old",
            _ if s.bucket() < 1000 => "new",
            _ => "old",
        };
        assert_eq!(
            now,
            expected,
            "shopper {i} (bucket {}) after evacuation",
            s.bucket()
        );
        if s.first == "new" && now == "old" {
            moved += 1;
        }
        // And they stay there afterwards.
        let again = client.get_jar("/", &mut s.jar).await.backend();
        assert_eq!(
            again, expected,
            "shopper {i} after evacuation, next request"
        );
    }
    assert_eq!(
        moved, held_by_pin,
        "evacuation moved exactly the pinned shoppers"
    );
}
