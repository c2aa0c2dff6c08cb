//! A deterministic resident-records table (the shape of the demo's health records: names, ID
//! numbers, mobiles, dates, costs) as CSV, for the ingest and sample benchmarks. A pure
//! function of the row count; no randomness beyond a fixed-seed SplitMix64.

use std::fmt::Write as _;

use shuyu_policy::calendar::civil_from_days;
use shuyu_policy::id_number_check_char;

/// `(name, type, classification, masking)` of every column, in file order.
pub const COLUMNS: [(&str, &str, &str, &str); 12] = [
    ("record_id", "string", "ordinary", "keep"),
    ("name", "string", "direct_identifier", "partial_name"),
    ("id_number", "string", "direct_identifier", "pseudonym"),
    ("mobile", "string", "direct_identifier", "partial_mobile"),
    ("gender", "string", "quasi_identifier", "suppress"),
    (
        "birth_date",
        "date",
        "quasi_identifier",
        "generalize_date:year",
    ),
    ("age", "int64", "quasi_identifier", "generalize_number:10"),
    ("district", "string", "ordinary", "keep"),
    ("diagnosis", "string", "sensitive", "suppress"),
    ("visit_date", "date", "ordinary", "keep"),
    ("cost", "float64", "sensitive", "generalize_number:100"),
    ("insured", "bool", "ordinary", "keep"),
];

const DISTRICTS: [(&str, &str); 10] = [
    ("海曙区", "330203"),
    ("江北区", "330205"),
    ("北仑区", "330206"),
    ("镇海区", "330211"),
    ("鄞州区", "330212"),
    ("奉化区", "330213"),
    ("余姚市", "330281"),
    ("慈溪市", "330282"),
    ("宁海县", "330226"),
    ("象山县", "330225"),
];
const SURNAMES: [&str; 16] = [
    "王", "李", "张", "陈", "刘", "杨", "黄", "赵", "吴", "周", "徐", "孙", "朱", "胡", "林", "沈",
];
const GIVEN: [&str; 24] = [
    "伟", "强", "磊", "军", "洋", "杰", "芳", "娜", "敏", "静", "丽", "艳", "文", "华", "宁", "一",
    "子", "嘉", "思", "雨", "安", "晓", "明", "玲",
];
const DIAGNOSES: [&str; 8] = [
    "健康体检",
    "上呼吸道感染",
    "急性胃肠炎",
    "高血压",
    "2型糖尿病",
    "冠心病",
    "骨折",
    "支气管哮喘",
];

/// SplitMix64: a tiny deterministic generator.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator from a seed.
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Writes the CSV text (header first) of `n_rows` resident records into `out`.
pub fn write_csv(n_rows: usize, out: &mut String) {
    let mut rng = SplitMix::new(0x5348_5559_5542_454E);
    out.reserve(n_rows * 150);
    let header: Vec<&str> = COLUMNS.iter().map(|c| c.0).collect();
    out.push_str(&header.join(","));
    out.push('\n');
    // 2026-01-01 is day 20454 since the epoch.
    let year_start = 20_454i64;
    for i in 0..n_rows {
        let age = rng.below(96) as i64;
        let birth = year_start - 1 - age * 365 - rng.below(365) as i64;
        let (by, bm, bd) = civil_from_days(birth);
        let district = &DISTRICTS[rng.below(DISTRICTS.len() as u64) as usize];
        let male = rng.below(2) == 0;
        let mut first17 = format!("{}{by:04}{bm:02}{bd:02}{:02}", district.1, rng.below(100));
        let gender_digit = (rng.below(5) * 2 + u64::from(male)) as u32;
        let _ = write!(first17, "{gender_digit}");
        let check = id_number_check_char(&first17).expect("17 digits");
        let name_len = 1 + rng.below(2) as usize;
        let mut name = SURNAMES[rng.below(SURNAMES.len() as u64) as usize].to_owned();
        for _ in 0..name_len {
            name.push_str(GIVEN[rng.below(GIVEN.len() as u64) as usize]);
        }
        let (vy, vm, vd) = civil_from_days(year_start + rng.below(273) as i64);
        let cost = 50.0 + (rng.below(900_000) as f64) / 100.0;
        let _ = writeln!(
            out,
            "R{i:010},{name},{first17}{check},1{:02}{:08},{},{by:04}-{bm:02}-{bd:02},{age},{},{},{vy:04}-{vm:02}-{vd:02},{cost:.2},{}",
            30 + rng.below(60),
            rng.below(100_000_000),
            if male { "男" } else { "女" },
            district.0,
            DIAGNOSES[rng.below(DIAGNOSES.len() as u64) as usize],
            rng.below(10) < 9,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_well_formed() {
        let mut a = String::new();
        let mut b = String::new();
        write_csv(50, &mut a);
        write_csv(50, &mut b);
        assert_eq!(a, b);
        let lines: Vec<&str> = a.lines().collect();
        assert_eq!(lines.len(), 51);
        for line in &lines {
            assert_eq!(line.split(',').count(), COLUMNS.len(), "{line}");
        }
        let id = lines[1].split(',').nth(2).expect("id column");
        assert_eq!(id.len(), 18);
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }
}
