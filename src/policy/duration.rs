//! Human-friendly durations in the config and policy files (`30s`, `15m`, `1h30m`).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

/// A strictly positive duration written the way people write them: `30s`, `15m`, `1h`, `1h30m`
/// (also ISO 8601, `PT15M`). Negative or zero durations are refused when the file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    /// Whole seconds, rounded down.
    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let signed = jiff::SignedDuration::try_from(self.0).map_err(|_| fmt::Error)?;
        write!(f, "{signed:#}")
    }
}

impl std::str::FromStr for ConfigDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parsed: jiff::SignedDuration = text
            .parse()
            .map_err(|_| format!("invalid duration {text:?} (expected e.g. 30s, 15m, 1h)"))?;
        if parsed.is_negative() || parsed.is_zero() {
            return Err(format!("duration {text:?} must be positive"));
        }
        let std =
            Duration::try_from(parsed).map_err(|_| format!("duration {text:?} is out of range"))?;
        Ok(Self(std))
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn friendly_durations_parse_to_seconds() {
        for (text, secs) in [
            ("30s", 30),
            ("15m", 900),
            ("1h", 3600),
            ("1h30m", 5400),
            ("PT10M", 600),
        ] {
            assert_eq!(
                text.parse::<ConfigDuration>().unwrap().as_secs(),
                secs,
                "{text}"
            );
        }
    }

    #[test]
    fn zero_negative_and_unitless_durations_are_refused() {
        for text in ["0s", "-5m", "90", "soon", ""] {
            assert!(text.parse::<ConfigDuration>().is_err(), "{text}");
        }
    }

    #[test]
    fn durations_display_in_the_friendly_form() {
        assert_eq!(
            "90m".parse::<ConfigDuration>().unwrap().to_string(),
            "1h 30m"
        );
    }
}
