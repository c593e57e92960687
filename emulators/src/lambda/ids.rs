//! Identifiers and timestamps in the shapes AWS uses.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A random version-4 UUID, as Lambda's request ids are.
pub(crate) fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    fastrand::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `n` random characters from `[a-z0-9]`, as in a Function URL id or an API id.
pub(crate) fn lower_alnum(n: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..n)
        .map(|_| CHARS[fastrand::usize(..CHARS.len())] as char)
        .collect()
}

/// `n` random lowercase hex characters.
pub(crate) fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n.div_ceil(2)];
    fastrand::fill(&mut bytes);
    let mut h = hex(&bytes);
    h.truncate(n);
    h
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An X-Ray trace header as Lambda passes it in `Lambda-Runtime-Trace-Id`.
pub(crate) fn trace_header(now: SystemTime) -> String {
    format!(
        "Root={};Parent={};Sampled=0",
        trace_root(now),
        random_hex(16)
    )
}

/// An X-Ray root trace id: `1-<8 hex seconds>-<24 hex>`.
pub(crate) fn trace_root(now: SystemTime) -> String {
    format!("1-{:08x}-{}", epoch(now).as_secs(), random_hex(24))
}

pub(crate) fn epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

pub(crate) fn epoch_millis(t: SystemTime) -> u64 {
    epoch(t).as_millis() as u64
}

/// Civil date (year, month 1-12, day 1-31) from days since 1970-01-01 (Howard Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

struct Utc {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
    millis: u32,
}

fn utc(t: SystemTime) -> Utc {
    let d = epoch(t);
    let secs = d.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    Utc {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: rem % 3600 / 60,
        second: rem % 60,
        millis: d.subsec_millis(),
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `12/Mar/2020:19:03:58 +0000`, the `requestContext.time` format of payload 2.0.
pub(crate) fn request_time(t: SystemTime) -> String {
    let u = utc(t);
    format!(
        "{:02}/{}/{}:{:02}:{:02}:{:02} +0000",
        u.day,
        MONTHS[(u.month - 1) as usize],
        u.year,
        u.hour,
        u.minute,
        u.second
    )
}

/// `2026-01-31T12:00:00.123Z`, the timestamp Lambda prints on platform log lines.
pub(crate) fn rfc3339_millis(t: SystemTime) -> String {
    let u = utc(t);
    format!(
        "{}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        u.year, u.month, u.day, u.hour, u.minute, u.second, u.millis
    )
}

/// `2026/01/31`, the date prefix of a Lambda log stream name.
pub(crate) fn log_stream_date(t: SystemTime) -> String {
    let u = utc(t);
    format!("{}/{:02}/{:02}", u.year, u.month, u.day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instant() {
        // 2020-03-12T19:03:58.123Z
        let t = UNIX_EPOCH + Duration::from_millis(1_584_039_838_123);
        assert_eq!(request_time(t), "12/Mar/2020:19:03:58 +0000");
        assert_eq!(rfc3339_millis(t), "2020-03-12T19:03:58.123Z");
        assert_eq!(log_stream_date(t), "2020/03/12");
    }

    #[test]
    fn uuid_shape() {
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_eq!(u.matches('-').count(), 4);
        assert_ne!(u, uuid_v4());
    }
}
