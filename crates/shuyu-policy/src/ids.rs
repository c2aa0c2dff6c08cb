//! Check characters of identifiers: GB 11643-1999 resident ID numbers (ISO 7064 MOD 11-2).
//! The one copy that real-name registration, the tests and the demo data use.

const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK: &[u8; 11] = b"10X98765432";

/// GB 11643-1999 check character of the first 17 digits of a resident ID number, or `None`
/// if they are not 17 ASCII digits.
pub fn id_number_check_char(first17: &str) -> Option<char> {
    let b = first17.as_bytes();
    if b.len() != 17 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = b
        .iter()
        .zip(ID_WEIGHTS)
        .map(|(c, w)| u32::from(c - b'0') * w)
        .sum();
    Some(char::from(ID_CHECK[(sum % 11) as usize]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // The standard's example, and numbers whose check characters are 'X', '4', '8' and '1'.
        assert_eq!(id_number_check_char("11010519491231002"), Some('X'));
        assert_eq!(id_number_check_char("44052418800101001"), Some('4'));
        assert_eq!(id_number_check_char("33020319850101000"), Some('8'));
        assert_eq!(id_number_check_char("00000000000000000"), Some('1'));
    }

    #[test]
    fn not_seventeen_digits_has_no_check_character() {
        assert_eq!(id_number_check_char("1101051949123100"), None);
        assert_eq!(id_number_check_char("110105194912310021"), None);
        assert_eq!(id_number_check_char("1101051949123100X"), None);
        assert_eq!(id_number_check_char("１1010519491231002"), None);
        assert_eq!(id_number_check_char(""), None);
    }

    #[test]
    fn every_check_character_is_reached() {
        let mut seen = std::collections::BTreeSet::new();
        for n in 0..200u32 {
            seen.insert(id_number_check_char(&format!("33020319850101{n:03}")).unwrap());
        }
        assert_eq!(seen.len(), 11, "{seen:?}");
    }
}
