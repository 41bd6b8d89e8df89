//! The status a row is answered with, by the split's share: every status the CSV accepts, at
//! the edges of the share (0, 1 bp, 99.99%, 100%), so a comparison moved by one (`>=` a lower
//! bound, `>` instead of `==`) fails here and not only end to end.

use super::tests_load::load_str;
use super::*;

const CSV: &str = "old_url,new_url,status\n/p301,/n301,301\n/p302,/n302,302\n/p307,/n307,307\n/p308,/n308,308\n/gone,,410\n";

/// The edges of the share, in basis points.
const SHARES: [u16; 6] = [0, 1, 100, 5_000, 9_999, 10_000];

fn answer(l: &Loaded, pq: &str, share_bp: u16) -> (u16, Option<String>) {
    let hit = l
        .table
        .lookup("", pq)
        .unwrap_or_else(|| panic!("{pq} is in the plan"));
    (hit.status_at(share_bp).as_u16(), hit.location)
}

#[test]
fn permanent_rows_are_temporary_until_exactly_the_full_share() {
    let l = load_str(CSV);
    for bp in SHARES {
        let full = bp == 10_000;
        let want = |permanent: u16, temporary: u16| if full { permanent } else { temporary };
        assert_eq!(
            answer(&l, "/p301", bp),
            (want(301, 302), Some("/n301".into())),
            "{bp} bp"
        );
        assert_eq!(
            answer(&l, "/p308", bp),
            (want(308, 307), Some("/n308".into())),
            "{bp} bp"
        );
        // Rows written as temporary stay temporary, whatever the share.
        assert_eq!(
            answer(&l, "/p302", bp),
            (302, Some("/n302".into())),
            "{bp} bp"
        );
        assert_eq!(
            answer(&l, "/p307", bp),
            (307, Some("/n307".into())),
            "{bp} bp"
        );
        // A page removed on purpose is gone at every share, with no Location.
        assert_eq!(answer(&l, "/gone", bp), (410, None), "{bp} bp");
    }
}

#[test]
fn as_written_tables_serve_the_written_status_at_every_share() {
    let l =
        super::tests_load::load_with(CSV, |c| c.during_shift = DuringShift::AsWritten, &|_, _| {
            None
        })
        .unwrap();
    for bp in SHARES {
        assert_eq!(answer(&l, "/p301", bp).0, 301, "{bp} bp");
        assert_eq!(answer(&l, "/p308", bp).0, 308, "{bp} bp");
        assert_eq!(answer(&l, "/gone", bp), (410, None), "{bp} bp");
    }
}

#[test]
fn the_full_share_is_ten_thousand_basis_points() {
    assert_eq!(FULL_SHARE_BP, 10_000);
    let l = load_str(CSV);
    assert_eq!(answer(&l, "/p301", FULL_SHARE_BP - 1).0, 302);
    assert_eq!(answer(&l, "/p301", FULL_SHARE_BP).0, 301);
}
