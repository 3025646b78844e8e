//! IANA time zone names (what R's `Sys.timezone()` gives) to the Windows names a
//! Logic App's Recurrence wants in `timeZone`.
//!
//! The pairs follow CLDR's `windowsZones.xml`; both a zone's current IANA name and
//! the older alias CLDR still lists (`Asia/Calcutta` for `Asia/Kolkata`) are here.
//! Left out on purpose: Australia/Lord_Howe, whose half-hour daylight saving shift
//! would move minute and hour recurrences off the cron's wall-clock minutes.

use crate::{Error, Result};

/// (IANA name, Windows name), grouped by Windows zone.
const ZONES: &[(&str, &str)] = &[
    ("UTC", "UTC"),
    ("Etc/UTC", "UTC"),
    ("Etc/GMT", "UTC"),
    ("GMT", "UTC"),
    // Europe
    ("Europe/London", "GMT Standard Time"),
    ("Europe/Dublin", "GMT Standard Time"),
    ("Europe/Lisbon", "GMT Standard Time"),
    ("Atlantic/Canary", "GMT Standard Time"),
    ("Atlantic/Reykjavik", "Greenwich Standard Time"),
    ("Europe/Berlin", "W. Europe Standard Time"),
    ("Europe/Vienna", "W. Europe Standard Time"),
    ("Europe/Zurich", "W. Europe Standard Time"),
    ("Europe/Rome", "W. Europe Standard Time"),
    ("Europe/Amsterdam", "W. Europe Standard Time"),
    ("Europe/Stockholm", "W. Europe Standard Time"),
    ("Europe/Oslo", "W. Europe Standard Time"),
    ("Europe/Luxembourg", "W. Europe Standard Time"),
    ("Europe/Monaco", "W. Europe Standard Time"),
    ("Europe/Malta", "W. Europe Standard Time"),
    ("Europe/Paris", "Romance Standard Time"),
    ("Europe/Brussels", "Romance Standard Time"),
    ("Europe/Copenhagen", "Romance Standard Time"),
    ("Europe/Madrid", "Romance Standard Time"),
    ("Europe/Prague", "Central Europe Standard Time"),
    ("Europe/Budapest", "Central Europe Standard Time"),
    ("Europe/Bratislava", "Central Europe Standard Time"),
    ("Europe/Ljubljana", "Central Europe Standard Time"),
    ("Europe/Belgrade", "Central Europe Standard Time"),
    ("Europe/Warsaw", "Central European Standard Time"),
    ("Europe/Zagreb", "Central European Standard Time"),
    ("Europe/Sarajevo", "Central European Standard Time"),
    ("Europe/Skopje", "Central European Standard Time"),
    ("Europe/Athens", "GTB Standard Time"),
    ("Europe/Bucharest", "GTB Standard Time"),
    ("Asia/Nicosia", "GTB Standard Time"),
    ("Europe/Helsinki", "FLE Standard Time"),
    ("Europe/Kyiv", "FLE Standard Time"),
    ("Europe/Kiev", "FLE Standard Time"),
    ("Europe/Riga", "FLE Standard Time"),
    ("Europe/Sofia", "FLE Standard Time"),
    ("Europe/Tallinn", "FLE Standard Time"),
    ("Europe/Vilnius", "FLE Standard Time"),
    ("Europe/Chisinau", "E. Europe Standard Time"),
    ("Europe/Kaliningrad", "Kaliningrad Standard Time"),
    ("Europe/Istanbul", "Turkey Standard Time"),
    ("Europe/Moscow", "Russian Standard Time"),
    ("Europe/Minsk", "Belarus Standard Time"),
    // Africa and the Middle East
    ("Africa/Casablanca", "Morocco Standard Time"),
    ("Africa/Lagos", "W. Central Africa Standard Time"),
    ("Africa/Algiers", "W. Central Africa Standard Time"),
    ("Africa/Tunis", "W. Central Africa Standard Time"),
    ("Africa/Cairo", "Egypt Standard Time"),
    ("Africa/Johannesburg", "South Africa Standard Time"),
    ("Africa/Nairobi", "E. Africa Standard Time"),
    ("Africa/Accra", "Greenwich Standard Time"),
    ("Asia/Jerusalem", "Israel Standard Time"),
    ("Asia/Amman", "Jordan Standard Time"),
    ("Asia/Beirut", "Middle East Standard Time"),
    ("Asia/Baghdad", "Arabic Standard Time"),
    ("Asia/Riyadh", "Arab Standard Time"),
    ("Asia/Qatar", "Arab Standard Time"),
    ("Asia/Kuwait", "Arab Standard Time"),
    ("Asia/Dubai", "Arabian Standard Time"),
    ("Asia/Tehran", "Iran Standard Time"),
    ("Asia/Baku", "Azerbaijan Standard Time"),
    ("Asia/Tbilisi", "Georgian Standard Time"),
    // Asia
    ("Asia/Karachi", "Pakistan Standard Time"),
    ("Asia/Tashkent", "West Asia Standard Time"),
    ("Asia/Yekaterinburg", "Ekaterinburg Standard Time"),
    ("Asia/Kolkata", "India Standard Time"),
    ("Asia/Calcutta", "India Standard Time"),
    ("Asia/Colombo", "Sri Lanka Standard Time"),
    ("Asia/Kathmandu", "Nepal Standard Time"),
    ("Asia/Katmandu", "Nepal Standard Time"),
    ("Asia/Dhaka", "Bangladesh Standard Time"),
    ("Asia/Yangon", "Myanmar Standard Time"),
    ("Asia/Rangoon", "Myanmar Standard Time"),
    ("Asia/Bangkok", "SE Asia Standard Time"),
    ("Asia/Jakarta", "SE Asia Standard Time"),
    ("Asia/Ho_Chi_Minh", "SE Asia Standard Time"),
    ("Asia/Saigon", "SE Asia Standard Time"),
    ("Asia/Novosibirsk", "N. Central Asia Standard Time"),
    ("Asia/Shanghai", "China Standard Time"),
    ("Asia/Hong_Kong", "China Standard Time"),
    ("Asia/Singapore", "Singapore Standard Time"),
    ("Asia/Kuala_Lumpur", "Singapore Standard Time"),
    ("Asia/Manila", "Singapore Standard Time"),
    ("Asia/Taipei", "Taipei Standard Time"),
    ("Asia/Tokyo", "Tokyo Standard Time"),
    ("Asia/Seoul", "Korea Standard Time"),
    ("Asia/Vladivostok", "Vladivostok Standard Time"),
    // Australia and the Pacific
    ("Australia/Perth", "W. Australia Standard Time"),
    ("Australia/Darwin", "AUS Central Standard Time"),
    ("Australia/Adelaide", "Cen. Australia Standard Time"),
    ("Australia/Brisbane", "E. Australia Standard Time"),
    ("Australia/Sydney", "AUS Eastern Standard Time"),
    ("Australia/Melbourne", "AUS Eastern Standard Time"),
    ("Australia/Hobart", "Tasmania Standard Time"),
    ("Pacific/Auckland", "New Zealand Standard Time"),
    ("Pacific/Fiji", "Fiji Standard Time"),
    ("Pacific/Honolulu", "Hawaiian Standard Time"),
    // The Americas
    ("America/Anchorage", "Alaskan Standard Time"),
    ("America/Los_Angeles", "Pacific Standard Time"),
    ("America/Vancouver", "Pacific Standard Time"),
    ("America/Tijuana", "Pacific Standard Time (Mexico)"),
    ("America/Phoenix", "US Mountain Standard Time"),
    ("America/Denver", "Mountain Standard Time"),
    ("America/Edmonton", "Mountain Standard Time"),
    ("America/Boise", "Mountain Standard Time"),
    ("America/Chicago", "Central Standard Time"),
    ("America/Winnipeg", "Central Standard Time"),
    ("America/Regina", "Canada Central Standard Time"),
    ("America/Mexico_City", "Central Standard Time (Mexico)"),
    ("America/Monterrey", "Central Standard Time (Mexico)"),
    ("America/Guatemala", "Central America Standard Time"),
    ("America/Costa_Rica", "Central America Standard Time"),
    ("America/New_York", "Eastern Standard Time"),
    ("America/Detroit", "Eastern Standard Time"),
    ("America/Toronto", "Eastern Standard Time"),
    ("America/Indiana/Indianapolis", "US Eastern Standard Time"),
    ("America/Indianapolis", "US Eastern Standard Time"),
    ("America/Havana", "Cuba Standard Time"),
    ("America/Bogota", "SA Pacific Standard Time"),
    ("America/Lima", "SA Pacific Standard Time"),
    ("America/Panama", "SA Pacific Standard Time"),
    ("America/Halifax", "Atlantic Standard Time"),
    ("America/Caracas", "Venezuela Standard Time"),
    ("America/La_Paz", "SA Western Standard Time"),
    ("America/Puerto_Rico", "SA Western Standard Time"),
    ("America/Santo_Domingo", "SA Western Standard Time"),
    ("America/Santiago", "Pacific SA Standard Time"),
    ("America/St_Johns", "Newfoundland Standard Time"),
    ("America/Sao_Paulo", "E. South America Standard Time"),
    ("America/Argentina/Buenos_Aires", "Argentina Standard Time"),
    ("America/Buenos_Aires", "Argentina Standard Time"),
    ("America/Montevideo", "Montevideo Standard Time"),
    ("America/Asuncion", "Paraguay Standard Time"),
];

/// The Windows time zone name for an IANA name (`"Europe/Vienna"` →
/// `"W. Europe Standard Time"`). Case does not matter, and a Windows name from the
/// table is returned as it is, so a caller may pass either.
pub fn windows_time_zone(iana: &str) -> Result<&'static str> {
    let name = iana.trim();
    if let Some((_, windows)) = ZONES.iter().find(|(i, _)| i.eq_ignore_ascii_case(name)) {
        return Ok(windows);
    }
    if let Some((_, windows)) = ZONES.iter().find(|(_, w)| w.eq_ignore_ascii_case(name)) {
        return Ok(windows);
    }
    Err(Error::input(format!(
        "time zone `{iana}` is not one serveRless can give a Logic App; use an IANA \
         name such as \"Europe/Vienna\", \"America/New_York\" or \"UTC\""
    )))
}

/// Every IANA name in the table, for documentation and tests.
pub fn known_time_zones() -> impl Iterator<Item = &'static str> {
    ZONES.iter().map(|(iana, _)| *iana)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn common_zones_map_as_cldr_says() {
        let cases = [
            ("UTC", "UTC"),
            ("Etc/UTC", "UTC"),
            ("Europe/Vienna", "W. Europe Standard Time"),
            ("Europe/Berlin", "W. Europe Standard Time"),
            ("Europe/Rome", "W. Europe Standard Time"),
            ("Europe/Amsterdam", "W. Europe Standard Time"),
            ("Europe/Zurich", "W. Europe Standard Time"),
            ("Europe/Stockholm", "W. Europe Standard Time"),
            ("Europe/Paris", "Romance Standard Time"),
            ("Europe/Madrid", "Romance Standard Time"),
            ("Europe/London", "GMT Standard Time"),
            ("America/New_York", "Eastern Standard Time"),
            ("America/Chicago", "Central Standard Time"),
            ("America/Denver", "Mountain Standard Time"),
            ("America/Los_Angeles", "Pacific Standard Time"),
            ("America/Sao_Paulo", "E. South America Standard Time"),
            ("Asia/Tokyo", "Tokyo Standard Time"),
            ("Asia/Shanghai", "China Standard Time"),
            ("Asia/Kolkata", "India Standard Time"),
            ("Asia/Calcutta", "India Standard Time"),
            ("Asia/Singapore", "Singapore Standard Time"),
            ("Australia/Sydney", "AUS Eastern Standard Time"),
        ];
        for (iana, windows) in cases {
            assert_eq!(windows_time_zone(iana).unwrap(), windows, "{iana}");
        }
    }

    #[test]
    fn case_and_windows_names_are_accepted() {
        assert_eq!(
            windows_time_zone("europe/vienna").unwrap(),
            "W. Europe Standard Time"
        );
        assert_eq!(
            windows_time_zone("W. Europe Standard Time").unwrap(),
            "W. Europe Standard Time"
        );
    }

    #[test]
    fn unknown_zone_is_an_input_error_that_names_it() {
        for bad in ["Mars/Olympus_Mons", "", "CEST", "Australia/Lord_Howe"] {
            let err = windows_time_zone(bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Input);
            assert!(err.message.contains(&format!("`{bad}`")), "{}", err.message);
            assert!(err.message.contains("Europe/Vienna"), "{}", err.message);
        }
    }

    #[test]
    fn table_is_large_and_has_no_duplicates() {
        let mut names: Vec<String> = known_time_zones().map(str::to_ascii_lowercase).collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate IANA names");
        assert!(n >= 60, "{n} zones");
    }
}
