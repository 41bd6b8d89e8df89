//! Search-engine crawlers by User-Agent: a case-insensitive substring list. Anyone can send
//! `Googlebot` in a header; a verified-crawler check (reverse DNS) is a later step, so crawler
//! hits are "claimed by the User-Agent".

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

/// Only this many leading bytes of a User-Agent are searched: crawler tokens come early, and
/// a scanner's 8 KiB header must not cost 8 KiB of scanning per request.
const UA_PREFIX: usize = 512;

/// The default list: the crawlers of the search engines a store's rankings depend on.
pub fn default_crawler_user_agents() -> Vec<String> {
    [
        "Googlebot",
        "Google-InspectionTool",
        "AdsBot-Google",
        "Storebot-Google",
        "bingbot",
        "DuckDuckBot",
        "YandexBot",
        "Baiduspider",
        "Applebot",
        "Slurp",
        "SeznamBot",
        "Qwantbot",
        "PetalBot",
        "Sogou",
        "Naverbot",
        "Yeti",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Compiled crawler patterns: one automaton for the whole list, so a User-Agent is read once
/// whatever the list's length (a search per pattern read it 16 times and was most of the
/// inventory's cost per request; BENCHMARKS.md).
pub struct CrawlerMatcher {
    automaton: Option<AhoCorasick>,
    patterns: usize,
}

impl std::fmt::Debug for CrawlerMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrawlerMatcher")
            .field("patterns", &self.patterns)
            .finish()
    }
}

impl Default for CrawlerMatcher {
    fn default() -> Self {
        CrawlerMatcher::new(&default_crawler_user_agents())
    }
}

impl CrawlerMatcher {
    /// Empty patterns are skipped; patterns are matched ASCII-case-insensitively.
    pub fn new(patterns: &[String]) -> Self {
        let patterns: Vec<&str> = patterns
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .collect();
        // A DFA: the fastest search, built once per config; the list is small (the default's
        // DFA is a few tens of KiB). Building can only fail past the automaton's size limits,
        // which a list of User-Agent tokens does not reach; then nothing is a crawler.
        let automaton = (!patterns.is_empty())
            .then(|| {
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::LeftmostFirst)
                    .kind(Some(AhoCorasickKind::DFA))
                    .build(&patterns)
                    .inspect_err(|e| tracing::warn!("crawler User-Agent list not usable: {e}"))
                    .ok()
            })
            .flatten();
        CrawlerMatcher {
            automaton,
            patterns: patterns.len(),
        }
    }

    /// Whether `user_agent` contains one of the patterns. Allocates nothing.
    pub fn is_crawler(&self, user_agent: &[u8]) -> bool {
        match &self.automaton {
            Some(a) if !user_agent.is_empty() => {
                a.is_match(&user_agent[..user_agent.len().min(UA_PREFIX)])
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_list_matches_real_user_agents() {
        let m = CrawlerMatcher::default();
        for ua in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
            "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
            "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
            "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
            "GOOGLEBOT",
        ] {
            assert!(m.is_crawler(ua.as_bytes()), "{ua}");
        }
        for ua in [
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            "curl/8.5.0",
            "",
        ] {
            assert!(!m.is_crawler(ua.as_bytes()), "{ua}");
        }
    }

    #[test]
    fn configured_list_replaces_default() {
        let m = CrawlerMatcher::new(&["MyBot".into(), "  ".into()]);
        assert!(m.is_crawler(b"x mybot/1"));
        assert!(!m.is_crawler(b"Googlebot"));
        assert!(!CrawlerMatcher::new(&[]).is_crawler(b"Googlebot"));
    }

    #[test]
    fn only_the_leading_bytes_are_searched() {
        let m = CrawlerMatcher::default();
        let late = format!("{}Googlebot", "x".repeat(UA_PREFIX));
        assert!(!m.is_crawler(late.as_bytes()));
        let early = format!("{}Googlebot", "x".repeat(UA_PREFIX - 9));
        assert!(m.is_crawler(early.as_bytes()));
    }
}
