//! A stable fingerprint of a short text (FNV-1a, 64 bits): the same value
//! on every machine and in every release, which std's hasher does not
//! promise.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a of `data`, continuing from `hash`.
fn fnv1a_from(hash: u64, data: &[u8]) -> u64 {
    data.iter().fold(hash, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// FNV-1a: a stable 64-bit fingerprint (not cryptographic). Its values
/// must not change between releases: they spread the crontab's times.
pub fn fnv1a(data: &[u8]) -> u64 {
    fnv1a_from(FNV_OFFSET, data)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_values_never_change() {
        // FNV-1a's published test vectors: a change here would move every
        // VM's cron times.
        assert_eq!(super::fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(super::fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(super::fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
