//! Seeded generator of realistic synthetic Ningbo (宁波) public data for the demo and quickstart.
//!
//! Three datasets modelled on a city public-data catalogue: resident health records (卫健委),
//! enterprise credit (市场监管局) and bus ridership (交通局). Everything is synthetic, but resident
//! ID numbers (GB 11643-1999) and unified social credit codes (GB 32100-2015) carry correct check
//! characters and are consistent with district, birth date and gender. Output is a pure function
//! of `(seed, n_rows)`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shuyu_policy::calendar::{civil_from_days, days_from_civil};

/// One column of a demo dataset, with its classification and optional masking override.
#[derive(Debug, Clone)]
pub struct DemoColumn {
    pub name: &'static str,
    pub data_type: &'static str,
    pub classification: &'static str,
    pub masking: Option<&'static str>,
}

/// A demo dataset: catalogue metadata plus its CSV text (header row first, `\n` line endings).
#[derive(Debug, Clone)]
pub struct DemoDataset {
    pub name: &'static str,
    pub description: &'static str,
    pub columns: Vec<DemoColumn>,
    pub csv: String,
}

/// Ningbo districts: (name, administrative division code, weight).
const DISTRICTS: &[(&str, &str, u32)] = &[
    ("海曙区", "330203", 12),
    ("江北区", "330205", 8),
    ("北仑区", "330206", 10),
    ("镇海区", "330211", 6),
    ("鄞州区", "330212", 18),
    ("奉化区", "330213", 6),
    ("余姚市", "330281", 12),
    ("慈溪市", "330282", 14),
    ("宁海县", "330226", 7),
    ("象山县", "330225", 7),
];

#[rustfmt::skip]
const SURNAMES: &[(&str, u32)] = &[
    ("王", 72), ("李", 70), ("张", 66), ("陈", 70), ("刘", 50), ("杨", 30), ("黄", 24),
    ("赵", 20), ("吴", 24), ("周", 22), ("徐", 20), ("孙", 14), ("马", 11), ("朱", 13),
    ("胡", 14), ("郭", 10), ("何", 10), ("林", 14), ("高", 10), ("罗", 8), ("郑", 12),
    ("梁", 7), ("谢", 7), ("宋", 6), ("唐", 6), ("许", 8), ("韩", 5), ("冯", 5), ("邓", 5),
    ("曹", 5), ("彭", 4), ("董", 4), ("袁", 3), ("潘", 5), ("蒋", 6), ("蔡", 4), ("余", 5),
    ("叶", 6), ("沈", 7), ("姚", 5), ("傅", 4), ("俞", 5), ("应", 4), ("邵", 4), ("毛", 3),
    ("欧阳", 1), ("诸葛", 1), ("司马", 1), ("上官", 1),
];
const MALE_CHARS: &str = "伟强磊军洋勇杰涛明超刚平辉鹏俊峰建国浩宇轩博睿晨志斌波海东亮";
const FEMALE_CHARS: &str = "芳娜敏静丽艳娟秀霞英玉萍红玲芬燕婷雪琳颖倩欣怡涵琪诺悦佳";
const NEUTRAL_CHARS: &str = "文华宁一子嘉思雨安晓";

/// (diagnosis, base cost in CNY, weight for age <18, 18–59, 60+).
const DIAGNOSES: &[(&str, f64, [u32; 3])] = &[
    ("健康体检", 300.0, [20, 25, 15]),
    ("上呼吸道感染", 180.0, [40, 20, 10]),
    ("急性胃肠炎", 220.0, [12, 10, 5]),
    ("高血压", 400.0, [0, 15, 25]),
    ("2型糖尿病", 600.0, [0, 8, 15]),
    ("冠心病", 3000.0, [0, 3, 10]),
    ("慢性阻塞性肺疾病", 1800.0, [0, 2, 8]),
    ("脑梗死", 8000.0, [0, 1, 6]),
    ("骨折", 5000.0, [8, 5, 5]),
    ("支气管哮喘", 500.0, [8, 3, 3]),
    ("腰椎间盘突出症", 1200.0, [0, 6, 4]),
    ("抑郁症", 800.0, [1, 3, 2]),
];

/// (industry, weight, company-name suffixes).
#[rustfmt::skip]
const INDUSTRIES: &[(&str, u32, &[&str])] = &[
    ("制造业", 30, &["机械", "模具", "电器", "塑料制品", "纺织", "汽车零部件"]),
    ("批发和零售业", 22, &["贸易", "商贸", "进出口", "五金"]),
    ("信息传输软件和信息技术服务业", 10, &["信息技术", "网络科技", "软件"]),
    ("建筑业", 10, &["建设工程", "建筑装饰", "市政工程"]),
    ("住宿和餐饮业", 8, &["餐饮管理", "酒店管理"]),
    ("交通运输仓储和邮政业", 9, &["物流", "货运代理", "供应链管理"]),
    ("租赁和商务服务业", 11, &["企业管理咨询", "商务服务", "设备租赁"]),
];
const BRANDS: &[&str] = &[
    "恒达", "华宇", "甬兴", "鑫源", "东海", "天诚", "博远", "海天", "金港", "瑞丰", "宏盛", "三江",
    "明州", "永欣", "立信", "中舟", "远航", "新禾", "润泽", "凯越",
];

/// Bus routes: (route, district index, fare in cents, stops).
#[rustfmt::skip]
const ROUTES: &[(&str, usize, u32, &[&str])] = &[
    ("1路", 0, 200, &["天一广场", "鼓楼", "西门口", "月湖公园", "宁波站"]),
    ("8路", 0, 200, &["宁波站", "南门", "天一广场", "解放桥", "高鑫广场"]),
    ("15路", 1, 200, &["江北万达", "老外滩", "宁波大学", "人民路"]),
    ("20路", 1, 200, &["宁波北站", "洪塘", "江北万达", "慈城"]),
    ("160路", 4, 200, &["南部商务区", "鄞州万达", "鄞州公园", "东部新城"]),
    ("K360路", 4, 300, &["东部新城", "鄞州区政府", "钟公庙", "宁波站"]),
    ("789路", 2, 400, &["北仑区政府", "新碶", "大碶", "九峰山"]),
    ("366路", 3, 200, &["招宝山", "骆驼", "庄市", "镇海区政府"]),
    ("641路", 5, 200, &["大成路", "岳林", "奉化汽车站", "溪口"]),
    ("511路", 6, 100, &["余姚站", "阳明公园", "余姚客运中心", "兰江"]),
    ("580路", 7, 100, &["慈溪汽车站", "浒山", "慈溪市政府", "坎墩"]),
    ("宁海1路", 8, 100, &["跃龙街道", "宁海汽车站", "桃源街道"]),
    ("象山2路", 9, 100, &["丹城", "象山汽车站", "石浦"]),
];
/// Boarding-hour weights for hours 5..=23 (morning and evening rush peaks).
const HOUR_WEIGHTS: [u32; 19] = [2, 5, 14, 13, 7, 5, 5, 5, 4, 4, 5, 7, 13, 12, 7, 5, 4, 2, 1];
const MOBILE_PREFIXES: &[&str] = &[
    "130", "131", "132", "133", "134", "135", "136", "137", "138", "139", "150", "151", "152",
    "153", "155", "156", "157", "158", "159", "170", "176", "177", "178", "180", "181", "182",
    "183", "185", "186", "187", "188", "189", "191", "198", "199",
];

const USCC_CHARSET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];
const ORG_WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];

/// GB 11643-1999 check character for the first 17 digits of a resident ID.
///
/// # Panics
/// If `first17` is not exactly 17 ASCII digits.
fn id_number_check_char(first17: &str) -> char {
    shuyu_policy::id_number_check_char(first17).expect("need 17 ASCII digits")
}

/// A valid, synthetic resident ID number for the `seq`-th member of staff of the demo
/// (born 1985, registered in 海曙区): distinct for distinct `seq` below 366 000.
pub fn staff_id_number(seq: u32) -> String {
    let day = days_from_civil(1985, 1, 1) + i64::from(seq / 1000);
    let (y, m, d) = civil_from_days(day);
    let first17 = format!("330203{y:04}{m:02}{d:02}{:03}", seq % 1000);
    let check = id_number_check_char(&first17);
    format!("{first17}{check}")
}

/// GB 32100-2015 check character for the first 17 characters of a unified social credit code.
///
/// # Panics
/// If `first17` is not exactly 17 characters from the code's charset.
pub fn uscc_check_char(first17: &str) -> char {
    let vals: Vec<u32> = first17
        .chars()
        .map(|c| uscc_value(c).expect("invalid USCC character"))
        .collect();
    assert!(vals.len() == 17, "need 17 characters");
    let sum: u32 = vals.iter().zip(USCC_WEIGHTS).map(|(v, w)| v * w).sum();
    let check = (31 - sum % 31) % 31;
    char::from(USCC_CHARSET.as_bytes()[check as usize])
}

fn uscc_value(c: char) -> Option<u32> {
    USCC_CHARSET.find(c).map(|i| i as u32)
}

/// GB 11714-1997 organization code check character for an 8-character body.
fn org_code_check_char(body: &str) -> char {
    let sum: u32 = body
        .chars()
        .zip(ORG_WEIGHTS)
        .map(|(c, w)| c.to_digit(36).unwrap_or(0) * w)
        .sum();
    match 11 - sum % 11 {
        10 => 'X',
        11 => '0',
        d => char::from(b'0' + d as u8),
    }
}

/// True for an 18-character resident ID: 17 digits with a real `YYYYMMDD` birth date in
/// positions 7–14, followed by the correct check character (`0`–`9` or uppercase `X`).
#[cfg(test)]
fn is_valid_id_number(s: &str) -> bool {
    shuyu_policy::normalize_id_number(s).is_ok_and(|n| n == s)
}

/// True for an 18-character unified social credit code over the GB 32100 charset with a correct
/// check character.
#[cfg_attr(not(test), allow(dead_code))]
pub fn is_valid_uscc(s: &str) -> bool {
    s.chars().count() == 18
        && s.chars().all(|c| uscc_value(c).is_some())
        && s[17..].starts_with(uscc_check_char(&s[..17]))
}

fn fmt_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len() as u32) as usize]
}

fn pick_weighted<T>(rng: &mut StdRng, items: &[T], weight: impl Fn(&T) -> u32) -> usize {
    let total: u32 = items.iter().map(&weight).sum();
    let mut r = rng.random_range(0..total);
    for (i, item) in items.iter().enumerate() {
        let w = weight(item);
        if r < w {
            return i;
        }
        r -= w;
    }
    items.len() - 1
}

fn pick_char(rng: &mut StdRng, pool: &str) -> char {
    let n = pool.chars().count() as u32;
    pool.chars()
        .nth(rng.random_range(0..n) as usize)
        .unwrap_or('明')
}

/// Standard normal deviate (Box–Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn digits(rng: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

fn district_idx(rng: &mut StdRng) -> usize {
    pick_weighted(rng, DISTRICTS, |d| d.2)
}

fn chinese_name(rng: &mut StdRng, male: bool) -> String {
    let mut name = SURNAMES[pick_weighted(rng, SURNAMES, |s| s.1)]
        .0
        .to_string();
    let len = if rng.random_bool(0.3) { 1 } else { 2 };
    for _ in 0..len {
        let pool = if rng.random_bool(0.2) {
            NEUTRAL_CHARS
        } else if male {
            MALE_CHARS
        } else {
            FEMALE_CHARS
        };
        name.push(pick_char(rng, pool));
    }
    name
}

fn mobile(rng: &mut StdRng) -> String {
    format!("{}{}", pick(rng, MOBILE_PREFIXES), digits(rng, 8))
}

/// A resident ID for someone registered in `district_code`, born on `birth` (days since epoch).
fn id_number(rng: &mut StdRng, district_code: &str, birth: i64, male: bool) -> String {
    let (y, m, d) = civil_from_days(birth);
    let gender_digit = rng.random_range(0..5u32) * 2 + u32::from(male);
    let first17 = format!(
        "{district_code}{y:04}{m:02}{d:02}{}{gender_digit}",
        digits(rng, 2)
    );
    let check = id_number_check_char(&first17);
    format!("{first17}{check}")
}

fn uscc(rng: &mut StdRng, district_code: &str) -> String {
    let charset: Vec<char> = USCC_CHARSET.chars().collect();
    let body: String = if rng.random_bool(0.7) {
        // Post-2015 registrations in Zhejiang typically start with "MA2".
        let tail: String = (0..5).map(|_| *pick(rng, &charset)).collect();
        format!("MA2{tail}")
    } else {
        digits(rng, 8)
    };
    let first17 = format!("91{district_code}{body}{}", org_code_check_char(&body));
    let check = uscc_check_char(&first17);
    format!("{first17}{check}")
}

/// Column specs written as `"name data_type classification masking"`, `-` meaning no override.
fn columns(specs: &[&'static str]) -> Vec<DemoColumn> {
    specs
        .iter()
        .map(|spec| {
            let f: Vec<&'static str> = spec.split_whitespace().collect();
            let masking = Some(f[3]).filter(|m| *m != "-");
            DemoColumn {
                name: f[0],
                data_type: f[1],
                classification: f[2],
                masking,
            }
        })
        .collect()
}

fn push_field(csv: &mut String, field: &str) {
    if field.contains([',', '"', '\n', '\r']) {
        csv.push('"');
        csv.push_str(&field.replace('"', "\"\""));
        csv.push('"');
    } else {
        csv.push_str(field);
    }
}

fn push_row<S: AsRef<str>>(csv: &mut String, fields: &[S]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            csv.push(',');
        }
        push_field(csv, f.as_ref());
    }
    csv.push('\n');
}

fn dataset(
    name: &'static str,
    description: &'static str,
    columns: Vec<DemoColumn>,
    rows: Vec<Vec<String>>,
) -> DemoDataset {
    let mut csv = String::new();
    let header: Vec<&str> = columns.iter().map(|c| c.name).collect();
    push_row(&mut csv, &header);
    for row in &rows {
        debug_assert_eq!(row.len(), columns.len());
        push_row(&mut csv, row);
    }
    DemoDataset {
        name,
        description,
        columns,
        csv,
    }
}

/// Generates the three demo datasets. Deterministic for a given `(seed, n_rows)`: same inputs,
/// byte-identical CSV. Each dataset has `n_rows` data rows.
pub fn generate(seed: u64, n_rows: usize) -> Vec<DemoDataset> {
    let sub = |k: u64| StdRng::seed_from_u64(seed ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    vec![
        health_records(&mut sub(1), n_rows),
        enterprise_credit(&mut sub(2), n_rows),
        bus_ridership(&mut sub(3), n_rows),
    ]
}

#[derive(Clone)]
struct Patient {
    name: String,
    id: String,
    mobile: String,
    male: bool,
    birth: i64,
    district: usize,
}

fn health_records(rng: &mut StdRng, n: usize) -> DemoDataset {
    let columns = columns(&[
        "record_id string ordinary keep",
        "name string direct_identifier partial_name",
        "id_number string direct_identifier pseudonym",
        "mobile string direct_identifier partial_mobile",
        "gender string quasi_identifier -",
        "birth_date date quasi_identifier generalize_date:year",
        "district string ordinary keep",
        "diagnosis string sensitive -",
        "visit_date date ordinary keep",
        "cost float64 sensitive generalize_number:100",
    ]);
    // (age range, weight): a roughly realistic age pyramid for visitors, 0–95.
    #[rustfmt::skip]
    const AGES: &[(u32, u32, u32)] =
        &[(0, 7, 8), (7, 18, 8), (18, 40, 22), (40, 60, 28), (60, 80, 26), (80, 96, 8)];
    let year_start = days_from_civil(2026, 1, 1);
    let visit_span = days_from_civil(2026, 10, 1) - year_start;
    let mut patients: Vec<Patient> = Vec::new();
    let mut rows = Vec::with_capacity(n);
    for i in 0..n {
        // About one record in five is a returning patient.
        let p = if !patients.is_empty() && rng.random_bool(0.2) {
            pick(rng, &patients).clone()
        } else {
            let a = AGES[pick_weighted(rng, AGES, |a| a.2)];
            let age = rng.random_range(a.0..a.1);
            let birth = year_start - 1 - i64::from(age) * 365 - rng.random_range(0..365i64);
            let male = rng.random_bool(0.5);
            let district = district_idx(rng);
            let p = Patient {
                name: chinese_name(rng, male),
                id: id_number(rng, DISTRICTS[district].1, birth, male),
                mobile: mobile(rng),
                male,
                birth,
                district,
            };
            patients.push(p.clone());
            p
        };
        let visit = year_start + rng.random_range(0..visit_span);
        let age = (visit - p.birth) / 365;
        let band = usize::from(age >= 18) + usize::from(age >= 60);
        let (diagnosis, base, _) = DIAGNOSES[pick_weighted(rng, DIAGNOSES, |d| d.2[band])];
        let mut cost = base * (0.6 * normal(rng)).exp();
        if cost < 50.0 {
            cost = 50.0 + 50.0 * rng.random::<f64>();
        }
        let cost = cost.min(20_000.0);
        rows.push(vec![
            format!("HR{:08}", i + 1),
            p.name,
            p.id,
            p.mobile,
            (if p.male { "男" } else { "女" }).to_string(),
            fmt_date(p.birth),
            DISTRICTS[p.district].0.to_string(),
            diagnosis.to_string(),
            fmt_date(visit),
            format!("{cost:.2}"),
        ]);
    }
    dataset(
        "health_records",
        "居民健康档案 Resident health records (卫健委)",
        columns,
        rows,
    )
}

fn enterprise_credit(rng: &mut StdRng, n: usize) -> DemoDataset {
    let columns = columns(&[
        "uscc string direct_identifier pseudonym",
        "company_name string direct_identifier suppress",
        "legal_rep_name string direct_identifier partial_name",
        "legal_rep_id_number string direct_identifier pseudonym",
        "district string ordinary keep",
        "industry string ordinary keep",
        "registered_capital float64 sensitive generalize_number:1000000",
        "credit_score int64 sensitive generalize_number:10",
        "credit_grade string ordinary keep",
        "established_date date quasi_identifier generalize_date:year",
    ]);
    let est_start = days_from_civil(1995, 1, 1);
    let est_span = days_from_civil(2026, 10, 1) - est_start;
    let today = days_from_civil(2026, 10, 1);
    let mut rows = Vec::with_capacity(n);
    for _ in 0..n {
        let d = district_idx(rng);
        let (district, code, _) = DISTRICTS[d];
        let (industry, _, suffixes) = INDUSTRIES[pick_weighted(rng, INDUSTRIES, |i| i.1)];
        let prefix = if district.ends_with('区') {
            format!("宁波市{district}")
        } else {
            district.to_string()
        };
        let form = if rng.random_bool(0.08) {
            "股份有限公司"
        } else {
            "有限公司"
        };
        let company = format!("{prefix}{}{}{form}", pick(rng, BRANDS), pick(rng, suffixes));
        let male = rng.random_bool(0.72);
        // Most legal representatives are registered residents of the same district.
        let rep_code = if rng.random_bool(0.8) {
            code
        } else {
            DISTRICTS[district_idx(rng)].1
        };
        // Skewed towards recent years: most registered companies are young.
        let established = est_start + (est_span as f64 * rng.random::<f64>().sqrt()) as i64;
        // Legal representative was 22–55 at founding and is at most 75 today.
        let oldest = (today - 75 * 365).max(established - 55 * 365);
        let rep_birth = rng.random_range(oldest..established - 22 * 365);
        let capital =
            (10f64.powf(5.0 + 3.5 * rng.random::<f64>().powf(1.6)) / 10_000.0).round() * 10_000.0;
        let score = (650.0 + 80.0 * normal(rng)).round().clamp(300.0, 900.0) as i64;
        rows.push(vec![
            uscc(rng, code),
            company,
            chinese_name(rng, male),
            id_number(rng, rep_code, rep_birth, male),
            district.to_string(),
            industry.to_string(),
            format!("{capital:.2}"),
            score.to_string(),
            credit_grade(score).to_string(),
            fmt_date(established),
        ]);
    }
    dataset(
        "enterprise_credit",
        "企业信用信息 Enterprise credit (市场监管局)",
        columns,
        rows,
    )
}

/// Letter grade consistent with the credit score: A ≥ 750, B ≥ 650, C ≥ 550, else D.
fn credit_grade(score: i64) -> &'static str {
    match score {
        750.. => "A",
        650..=749 => "B",
        550..=649 => "C",
        _ => "D",
    }
}

fn bus_ridership(rng: &mut StdRng, n: usize) -> DemoDataset {
    let columns = columns(&[
        "card_id string direct_identifier pseudonym",
        "holder_mobile string direct_identifier partial_mobile",
        "route string ordinary keep",
        "boarding_stop string quasi_identifier -",
        "boarding_date date ordinary keep",
        "boarding_hour int64 ordinary keep",
        "fare float64 ordinary keep",
        "district string ordinary keep",
    ]);
    // A pool of cardholders, each riding several times in the month (linkable trips).
    let cards: Vec<(String, String, usize)> = (0..n.div_ceil(3))
        .map(|_| {
            (
                format!("3302{}", digits(rng, 12)),
                mobile(rng),
                district_idx(rng),
            )
        })
        .collect();
    let oct1 = days_from_civil(2026, 10, 1);
    let mut rows = Vec::with_capacity(n);
    for _ in 0..n {
        let (card, phone, home) = pick(rng, &cards).clone();
        let local: Vec<usize> = (0..ROUTES.len()).filter(|&r| ROUTES[r].1 == home).collect();
        let r = if rng.random_bool(0.75) {
            *pick(rng, &local)
        } else {
            pick_weighted(rng, ROUTES, |_| 1)
        };
        let (route, route_district, fare_cents, stops) = ROUTES[r];
        let hour = 5 + pick_weighted(rng, &HOUR_WEIGHTS, |w| *w);
        rows.push(vec![
            card,
            phone,
            route.to_string(),
            pick(rng, stops).to_string(),
            fmt_date(oct1 + rng.random_range(0..31i64)),
            hour.to_string(),
            format!("{:.2}", f64::from(fare_cents) / 100.0),
            DISTRICTS[route_district].0.to_string(),
        ]);
    }
    dataset(
        "bus_ridership",
        "公交刷卡记录 Bus ridership (交通局)",
        columns,
        rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimal RFC 4180 parser (quoted fields, doubled quotes, `\n` records).
    fn parse_csv(text: &str) -> Vec<Vec<String>> {
        let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
        let (mut quoted, mut chars) = (false, text.chars().peekable());
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                (true, '"') => quoted = false,
                (true, c) => field.push(c),
                (false, '"') => quoted = true,
                (false, ',') => row.push(std::mem::take(&mut field)),
                (false, '\n') => {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                (false, c) => field.push(c),
            }
        }
        assert!(
            field.is_empty() && row.is_empty(),
            "CSV must end with a newline"
        );
        rows
    }

    /// A parsed dataset: column names and data rows (header excluded).
    struct Table {
        cols: Vec<&'static str>,
        rows: Vec<Vec<String>>,
    }

    impl Table {
        fn get<'r>(&self, row: &'r [String], col: &str) -> &'r str {
            &row[self.cols.iter().position(|c| *c == col).expect("column")]
        }
    }

    fn table(sets: &[DemoDataset], name: &str) -> Table {
        let ds = sets.iter().find(|d| d.name == name).expect("dataset");
        let mut rows = parse_csv(&ds.csv);
        rows.remove(0);
        Table {
            cols: ds.columns.iter().map(|c| c.name).collect(),
            rows,
        }
    }

    #[test]
    fn check_char_known_answers() {
        assert_eq!(id_number_check_char("11010519491231002"), 'X');
        assert_eq!(id_number_check_char("44052418800101001"), '4');
        assert!(is_valid_id_number("11010519491231002X"));
        assert!(is_valid_id_number("440524188001010014"));
        assert!(!is_valid_id_number("440524188001010015"));
        assert!(!is_valid_id_number("11010519491331002X"), "month 13");
        assert!(!is_valid_id_number("44052418800101001"));
        assert_eq!(uscc_check_char("91350100M000100Y4"), '3');
        assert!(is_valid_uscc("91350100M000100Y43"));
        assert!(!is_valid_uscc("91350100M000100Y44"));
        assert!(
            !is_valid_uscc("91350100M000100I43"),
            "I is not in the charset"
        );
        assert!(!is_valid_uscc("91350100M000100Y4"));
        assert_eq!(org_code_check_char("M000100Y"), '4');
    }

    #[test]
    fn dates_and_grades() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(fmt_date(days_from_civil(2024, 2, 29)), "2024-02-29");
        assert_eq!(fmt_date(days_from_civil(2026, 10, 1) - 1), "2026-09-30");
        let grades: Vec<_> = [900, 750, 749, 650, 649, 550, 549, 300]
            .map(credit_grade)
            .into();
        assert_eq!(grades, ["A", "A", "B", "B", "C", "C", "D", "D"]);
    }

    #[test]
    fn deterministic() {
        let (a, b, c) = (generate(42, 300), generate(42, 300), generate(43, 300));
        for i in 0..3 {
            assert_eq!(a[i].csv, b[i].csv);
            assert_ne!(a[i].csv, c[i].csv);
        }
    }

    #[test]
    fn headers_field_counts_and_formats() {
        let sets = generate(7, 500);
        let names: Vec<_> = sets.iter().map(|d| d.name).collect();
        assert_eq!(
            names,
            ["health_records", "enterprise_credit", "bus_ridership"]
        );
        let classes = [
            "direct_identifier",
            "quasi_identifier",
            "sensitive",
            "ordinary",
        ];
        for ds in &sets {
            let rows = parse_csv(&ds.csv);
            let header: Vec<&str> = ds.columns.iter().map(|c| c.name).collect();
            assert_eq!(rows[0], header);
            assert_eq!(rows.len(), 501);
            assert!(rows.iter().all(|r| r.len() == ds.columns.len()));
            assert!(!ds.csv.contains(" \n") && !ds.csv.contains('\r'));
            for (i, c) in ds.columns.iter().enumerate() {
                assert!(classes.contains(&c.classification), "{}", c.name);
                assert!(c.masking != Some("keep") || c.classification == "ordinary");
                for v in rows[1..].iter().map(|r| &r[i]) {
                    let ok = match c.data_type {
                        "date" => v.len() == 10 && &v[4..5] == "-" && &v[7..8] == "-",
                        "float64" => v.parse::<f64>().is_ok() && v.find('.') == Some(v.len() - 3),
                        "int64" => v.parse::<i64>().is_ok(),
                        "string" => !v.is_empty(),
                        other => panic!("unexpected data type {other}"),
                    };
                    assert!(ok, "{}.{}: {v:?}", ds.name, c.name);
                }
            }
        }
    }

    #[test]
    fn id_numbers_valid_and_consistent() {
        let sets = generate(2026, 1000);
        let h = table(&sets, "health_records");
        for r in &h.rows {
            let id = h.get(r, "id_number");
            let birth = h.get(r, "birth_date");
            assert!(is_valid_id_number(id), "{id}");
            assert_eq!(id[6..14], birth.replace('-', ""));
            assert_eq!(
                (id.as_bytes()[16] - b'0') % 2 == 1,
                h.get(r, "gender") == "男"
            );
            let district = DISTRICTS.iter().find(|x| x.0 == h.get(r, "district"));
            assert_eq!(Some(&id[..6]), district.map(|x| x.1));
            assert!(birth >= "1930-01-01" && birth <= h.get(r, "visit_date"));
            let cost: f64 = h.get(r, "cost").parse().expect("cost");
            assert!((50.0..=20_000.0).contains(&cost));
        }
        let e = table(&sets, "enterprise_credit");
        for r in &e.rows {
            let uscc = e.get(r, "uscc");
            assert!(is_valid_uscc(uscc), "{uscc}");
            assert_eq!(org_code_check_char(&uscc[8..16]).to_string(), uscc[16..17]);
            assert!(is_valid_id_number(e.get(r, "legal_rep_id_number")));
            assert!(e.get(r, "legal_rep_id_number")[6..10] < e.get(r, "established_date")[..4]);
            let score: i64 = e.get(r, "credit_score").parse().expect("score");
            assert!((300..=900).contains(&score));
            assert_eq!(e.get(r, "credit_grade"), credit_grade(score));
        }
    }

    #[test]
    fn mobiles_and_cards() {
        let sets = generate(11, 800);
        for (t, c) in [
            ("health_records", "mobile"),
            ("bus_ridership", "holder_mobile"),
        ] {
            let tab = table(&sets, t);
            for m in tab.rows.iter().map(|r| tab.get(r, c)) {
                assert!(m.len() == 11 && m.starts_with('1'), "{m}");
                assert!(m.bytes().all(|b| b.is_ascii_digit()), "{m}");
            }
        }
        let bus = table(&sets, "bus_ridership");
        for r in &bus.rows {
            assert_eq!(bus.get(r, "card_id").len(), 16);
            let hour: u32 = bus.get(r, "boarding_hour").parse().expect("hour");
            assert!((5..=23).contains(&hour));
            assert!(bus.get(r, "boarding_date").starts_with("2026-10-"));
        }
    }

    #[test]
    fn every_district_well_represented() {
        let sets = generate(1, 2000);
        let h = table(&sets, "health_records");
        for (name, _, _) in DISTRICTS {
            let count = h
                .rows
                .iter()
                .filter(|r| h.get(r, "district") == *name)
                .count();
            assert!(count >= 30, "{name}: {count}");
        }
    }

    #[test]
    fn zero_rows_gives_headers_only() {
        for ds in generate(5, 0) {
            assert_eq!(ds.csv.lines().count(), 1);
            assert!(ds.csv.ends_with('\n'));
        }
    }

    #[test]
    fn quoting() {
        let mut s = String::new();
        push_row(&mut s, &["a,b", "say \"hi\"", "宁波"]);
        assert_eq!(s, "\"a,b\",\"say \"\"hi\"\"\",宁波\n");
        assert_eq!(parse_csv(&s), vec![vec!["a,b", "say \"hi\"", "宁波"]]);
    }
}
