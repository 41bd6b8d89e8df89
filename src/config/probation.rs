//! `[redirect_probation]`: checked with each value's line and compiled into the snapshot's
//! [`RedirectProbation`] (not started: the reloader sets the mark, see `reload::probation`).

use super::check::{dur, Check};
use super::raw::RawConfig;
use crate::redirects::probation::{RedirectProbation, DEFAULT_MAX_AGE, DEFAULT_PERIOD};

/// Validates the section and returns the probation it configures. Pure (no file, no clock):
/// it belongs with the checks of the text.
pub(super) fn check(c: &mut Check<'_>, raw: &RawConfig) -> RedirectProbation {
    let section = &raw.redirect_probation;
    let period = dur(&section.period, DEFAULT_PERIOD);
    let max_age = dur(&section.max_age, DEFAULT_MAX_AGE);
    if let Some(m) = &section.max_age {
        if m.get_ref().0.subsec_nanos() != 0 {
            c.at(
                m,
                "redirect_probation.max_age",
                "must be whole seconds (Cache-Control: max-age counts seconds), e.g. \"1d\" or \"3600s\"",
            );
        }
        if !period.is_zero() && max_age > period {
            c.at(
                m,
                "redirect_probation.max_age",
                format!(
                    "is longer than the probation period ({}s): a rollback near its end would not reach browsers until after it; use a max_age of at most the period",
                    period.as_secs()
                ),
            );
        }
    }
    RedirectProbation::new(period, max_age)
}
