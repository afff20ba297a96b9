//! `sopvault.toml`: one file that says what a night of backups does — the
//! repository and its password source, the people who sign the report, the
//! sources (paths and dump streams, on which days, how large at least, kept
//! how long), and the mirrors.
//!
//! Parsing is serde over TOML with every table closed (`deny_unknown_fields`),
//! so a misspelt key is an error. Values that TOML accepts but sopvault does
//! not (a day called `Mo`, a size of `10 MB/s`, two sources of one name) are
//! checked after parsing; each error names the file and the line.

use crate::error::{Error, Result};
use crate::ops::retention::{parse_count, Count, Policy};
use crate::ops::snapshot::validate_name;
use serde::Deserialize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The whole file, checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SopConfig {
    /// The language of reports: `id` (Indonesian) or `en`.
    #[serde(default = "default_lang")]
    pub lang: Spanned<String>,
    pub repository: RepositoryConfig,
    #[serde(default)]
    pub report: ReportConfig,
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    #[serde(default, rename = "mirror")]
    pub mirrors: Vec<MirrorConfig>,
}

fn default_lang() -> Spanned<String> {
    Spanned::new(0..0, "id".to_string())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RepositoryConfig {
    /// A directory or `s3://BUCKET/PREFIX`.
    pub path: Spanned<String>,
    /// A file holding the password or machine secret (mode 0600).
    pub password_file: Option<Spanned<PathBuf>>,
    /// A command that prints the password.
    pub password_command: Option<Spanned<String>>,
    pub cache_dir: Option<PathBuf>,
}

/// Who the report names: the institution, the unit, and the three people of
/// the signature block.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ReportConfig {
    #[serde(default)]
    pub institution: String,
    #[serde(default)]
    pub unit: String,
    pub prepared_by: Option<Person>,
    pub checked_by: Option<Person>,
    pub approved_by: Option<Person>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Person {
    pub name: String,
    #[serde(default)]
    pub position: String,
    /// An employee number (NIP), printed under the name.
    #[serde(default)]
    pub id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SourceConfig {
    pub name: Spanned<String>,
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    #[serde(default)]
    pub streams: Vec<StreamConfig>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The days it runs: `daily` (the default) or day names (`mon` … `sun`).
    #[serde(default)]
    pub days: Option<Spanned<Vec<String>>>,
    /// The smallest size a good run has (`"10 MiB"`, `"2GB"`, or bytes):
    /// less is flagged in the report.
    pub min_size: Option<Spanned<toml::Value>>,
    /// Retention: `daily = 31`, `monthly = 24`, … (as `prune --keep-*`).
    pub keep: Spanned<KeepConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StreamConfig {
    pub name: Spanned<String>,
    pub command: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KeepConfig {
    pub last: Option<toml::Value>,
    pub hourly: Option<toml::Value>,
    pub daily: Option<toml::Value>,
    pub weekly: Option<toml::Value>,
    pub monthly: Option<toml::Value>,
    pub yearly: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MirrorConfig {
    pub name: Spanned<String>,
    /// A directory (an external disk), `s3://BUCKET/PREFIX`, or `rclone:REMOTE:PATH`.
    pub target: Spanned<String>,
    /// For a directory: the disk must be mounted there (default true), so a
    /// missing disk is "storage media not available", not a copy into the
    /// empty mount point.
    #[serde(default = "yes")]
    pub mount_point: bool,
    /// The share of files whose SHA-256 is read back after each run (`"5%"`).
    #[serde(default = "default_sample")]
    pub verify_sample: Spanned<String>,
}

fn yes() -> bool {
    true
}

fn default_sample() -> Spanned<String> {
    Spanned::new(0..0, "5%".to_string())
}

/// A weekday, Monday first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Weekday(pub u8);

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Weekday {
    pub fn name(self) -> &'static str {
        DAY_NAMES[usize::from(self.0)]
    }
    pub fn from_chrono(d: chrono::Weekday) -> Weekday {
        Weekday(u8::try_from(d.num_days_from_monday()).unwrap_or(0))
    }
}

/// A source as a run uses it: its values parsed and checked.
#[derive(Debug)]
pub struct Source {
    pub name: String,
    pub paths: Vec<PathBuf>,
    pub streams: Vec<(String, String)>,
    pub exclude: Vec<String>,
    pub tags: Vec<String>,
    /// The weekdays it runs on (all seven for `daily`).
    pub days: Vec<Weekday>,
    pub min_size: Option<u64>,
    pub policy: Policy,
}

/// A mirror as a run uses it.
#[derive(Debug)]
pub struct Mirror {
    pub name: String,
    pub target: String,
    pub mount_point: bool,
    /// Parts per thousand of the files to read back.
    pub verify_permille: u32,
}

/// The configuration a run carries out: [`SopConfig`] with every value checked.
#[derive(Debug)]
pub struct Plan {
    pub path: PathBuf,
    pub lang: String,
    pub repository: RepositoryConfig,
    pub report: ReportConfig,
    pub sources: Vec<Source>,
    pub mirrors: Vec<Mirror>,
}

impl Plan {
    /// The sources due on `day`.
    pub fn due_on(&self, day: Weekday) -> impl Iterator<Item = &Source> {
        self.sources.iter().filter(move |s| s.days.contains(&day))
    }
}

/// Where the configuration is looked for when `--config` is not given: the
/// system's, then the user's.
pub fn default_paths() -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from("/etc/sopvault/sopvault.toml")];
    let user = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(dir) = user {
        out.push(dir.join("sopvault").join("sopvault.toml"));
    }
    out
}

/// Reads and checks the configuration at `path`.
pub fn load(path: &Path) -> Result<Plan> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse(path, &text)
}

/// Parses and checks `text`, the contents of `path` (named in errors).
pub fn parse(path: &Path, text: &str) -> Result<Plan> {
    let raw: SopConfig = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        config_error(path, line, e.message().trim_end().to_string())
    })?;
    let at = |span: Range<usize>, reason: String| {
        config_error(path, Some(line_of(text, span.start)), reason)
    };
    check_lang(&raw.lang, &at)?;
    check_repository(&raw.repository, &at)?;
    let mut sources = Vec::with_capacity(raw.sources.len());
    for s in &raw.sources {
        if sources.iter().any(|o: &Source| o.name == *s.name.get_ref()) {
            return Err(at(
                s.name.span(),
                format!("a second source named {:?}", s.name.get_ref()),
            ));
        }
        sources.push(check_source(s, &at)?);
    }
    let mut mirrors = Vec::with_capacity(raw.mirrors.len());
    for m in &raw.mirrors {
        if mirrors.iter().any(|o: &Mirror| o.name == *m.name.get_ref()) {
            return Err(at(
                m.name.span(),
                format!("a second mirror named {:?}", m.name.get_ref()),
            ));
        }
        mirrors.push(check_mirror(m, &at)?);
    }
    Ok(Plan {
        path: path.to_path_buf(),
        lang: raw.lang.into_inner(),
        repository: raw.repository,
        report: raw.report,
        sources,
        mirrors,
    })
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn config_error(path: &Path, line: Option<usize>, reason: String) -> Error {
    let object = match line {
        Some(n) => format!("{}, line {n}", path.display()),
        None => path.display().to_string(),
    };
    Error::Config { object, reason }
}

type At<'a> = dyn Fn(Range<usize>, String) -> Error + 'a;

fn check_lang(lang: &Spanned<String>, at: &At<'_>) -> Result<()> {
    match lang.get_ref().as_str() {
        "id" | "en" => Ok(()),
        other => Err(at(
            lang.span(),
            format!("lang {other:?}: expected \"id\" or \"en\""),
        )),
    }
}

fn check_repository(r: &RepositoryConfig, at: &At<'_>) -> Result<()> {
    if r.path.get_ref().is_empty() {
        return Err(at(r.path.span(), "repository path is empty".into()));
    }
    if let (Some(_), Some(c)) = (&r.password_file, &r.password_command) {
        return Err(at(
            c.span(),
            "give password-file or password-command, not both".into(),
        ));
    }
    Ok(())
}

fn check_source(s: &SourceConfig, at: &At<'_>) -> Result<Source> {
    let name = s.name.get_ref().clone();
    validate_name("source", &name).map_err(|e| at(s.name.span(), e.to_string()))?;
    let mut streams: Vec<(String, String)> = Vec::new();
    for st in &s.streams {
        let n = st.name.get_ref();
        validate_name("stream", n).map_err(|e| at(st.name.span(), e.to_string()))?;
        if streams.iter().any(|(o, _)| o == n) {
            return Err(at(
                st.name.span(),
                format!("a second stream named {n:?} in source {name:?}"),
            ));
        }
        streams.push((n.clone(), st.command.clone()));
    }
    if s.paths.is_empty() && streams.is_empty() {
        return Err(at(
            s.name.span(),
            format!("source {name:?} has neither paths nor streams"),
        ));
    }
    let days = match &s.days {
        None => (0..7).map(Weekday).collect(),
        Some(d) => parse_days(d.get_ref()).map_err(|r| at(d.span(), r))?,
    };
    let min_size = match &s.min_size {
        None => None,
        Some(v) => {
            Some(parse_size(v.get_ref()).map_err(|r| at(v.span(), format!("min-size: {r}")))?)
        }
    };
    let policy = keep_policy(s.keep.get_ref()).map_err(|r| at(s.keep.span(), r))?;
    Ok(Source {
        name,
        paths: s.paths.clone(),
        streams,
        exclude: s.exclude.clone(),
        tags: s.tags.clone(),
        days,
        min_size,
        policy,
    })
}

fn check_mirror(m: &MirrorConfig, at: &At<'_>) -> Result<Mirror> {
    validate_name("mirror", m.name.get_ref()).map_err(|e| at(m.name.span(), e.to_string()))?;
    if m.target.get_ref().is_empty() {
        return Err(at(m.target.span(), "mirror target is empty".into()));
    }
    let verify_permille = parse_percent(m.verify_sample.get_ref())
        .map_err(|r| at(m.verify_sample.span(), format!("verify-sample: {r}")))?;
    Ok(Mirror {
        name: m.name.get_ref().clone(),
        target: m.target.get_ref().clone(),
        mount_point: m.mount_point,
        verify_permille,
    })
}

/// `["daily"]` or day names, each once.
pub fn parse_days(days: &[String]) -> std::result::Result<Vec<Weekday>, String> {
    if days.len() == 1 && days[0] == "daily" {
        return Ok((0..7).map(Weekday).collect());
    }
    let mut out = Vec::new();
    for d in days {
        let lower = d.to_ascii_lowercase();
        let Some(i) = DAY_NAMES.iter().position(|n| *n == lower) else {
            return Err(format!(
                "day {d:?}: expected \"daily\" or day names {}",
                DAY_NAMES.join(", ")
            ));
        };
        let day = Weekday(u8::try_from(i).unwrap_or(0));
        if out.contains(&day) {
            return Err(format!("day {d:?} is listed twice"));
        }
        out.push(day);
    }
    if out.is_empty() {
        return Err("no day given: expected \"daily\" or day names".into());
    }
    out.sort();
    Ok(out)
}

/// A size: bytes as an integer, or a string with a unit (`B`, `KB`, `MB`,
/// `GB`, `TB` in powers of 1000; `KiB` … `TiB` in powers of 1024).
pub fn parse_size(v: &toml::Value) -> std::result::Result<u64, String> {
    let s = match v {
        toml::Value::Integer(n) => {
            return u64::try_from(*n).map_err(|_| format!("{n}: expected a size of 0 or more"))
        }
        toml::Value::String(s) => s.trim(),
        other => {
            return Err(format!(
                "{}: expected bytes or a string like \"10 MiB\"",
                other.type_str()
            ))
        }
    };
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = (&s[..split], s[split..].trim());
    let mult: f64 = match unit {
        "" | "B" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ))
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit, like \"10 MiB\""))?;
    let bytes = (n * mult).round();
    if !(0.0..=u64::MAX as f64).contains(&bytes) {
        return Err(format!("{s:?}: out of range"));
    }
    // In range and rounded: the cast is exact enough for a size threshold.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(bytes as u64)
}

/// `"5%"` → 50 parts per thousand; at most `"100%"`.
pub fn parse_percent(s: &str) -> std::result::Result<u32, String> {
    let num = s
        .trim()
        .strip_suffix('%')
        .ok_or_else(|| format!("{s:?}: expected a percentage like \"5%\""))?;
    let p: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: expected a percentage like \"5%\""))?;
    if !(0.0..=100.0).contains(&p) {
        return Err(format!("{s:?}: expected 0% to 100%"));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok((p * 10.0).round() as u32)
}

/// The retention policy of a `keep` table; at least one rule.
fn keep_policy(k: &KeepConfig) -> std::result::Result<Policy, String> {
    let count =
        |key: &str, v: &Option<toml::Value>| -> std::result::Result<Option<Count>, String> {
            match v {
                None => Ok(None),
                Some(toml::Value::Integer(n)) => parse_count(&n.to_string())
                    .map(Some)
                    .map_err(|e| format!("keep.{key}: {e}")),
                Some(toml::Value::String(s)) => parse_count(s)
                    .map(Some)
                    .map_err(|e| format!("keep.{key}: {e}")),
                Some(other) => Err(format!(
                    "keep.{key} is a {}: expected a count or \"unlimited\"",
                    other.type_str()
                )),
            }
        };
    let policy = Policy {
        keep_last: count("last", &k.last)?,
        keep_hourly: count("hourly", &k.hourly)?,
        keep_daily: count("daily", &k.daily)?,
        keep_weekly: count("weekly", &k.weekly)?,
        keep_monthly: count("monthly", &k.monthly)?,
        keep_yearly: count("yearly", &k.yearly)?,
        keep_within: None,
        keep_tags: Vec::new(),
    };
    if policy.is_empty() {
        return Err(
            "keep: no rule given (daily, weekly, monthly, …): a run would forget every snapshot"
                .into(),
        );
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../docs/sopvault.example.toml");

    fn parse_text(text: &str) -> Result<Plan> {
        parse(Path::new("sopvault.toml"), text)
    }

    #[test]
    fn the_example_parses_into_a_plan() {
        let plan = parse_text(EXAMPLE).unwrap();
        assert_eq!(plan.lang, "id");
        assert_eq!(plan.sources.len(), 2);
        let db = &plan.sources[0];
        assert_eq!(
            db.streams,
            vec![("siakad.sql".into(), "pg_dump siakad".into())]
        );
        assert_eq!(db.min_size, Some(10 << 20));
        assert_eq!(db.days.len(), 7);
        assert!(db.policy.keep_daily.is_some() && db.policy.keep_monthly.is_some());
        let web = &plan.sources[1];
        assert_eq!(web.days, vec![Weekday(0), Weekday(2), Weekday(4)]);
        assert_eq!(plan.mirrors[0].verify_permille, 50);
        assert!(plan.mirrors[0].mount_point);
        assert_eq!(plan.mirrors[1].verify_permille, 20);
        let tuesday: Vec<&str> = plan.due_on(Weekday(1)).map(|s| s.name.as_str()).collect();
        assert_eq!(tuesday, ["siakad-db"]);
        assert_eq!(plan.report.approved_by.as_ref().unwrap().id, "19700101");
    }

    /// Each bad file fails with an error naming the line of the culprit.
    #[test]
    fn errors_name_the_line() {
        let base = "[repository]\npath = \"/r\"\n";
        let check = |extra: &str, line: usize, needle: &str| {
            let text = format!("{base}{extra}");
            let e = parse_text(&text).expect_err(extra).to_string();
            assert!(e.contains(&format!("sopvault.toml, line {line}:")), "{e}");
            assert!(e.contains(needle), "{e} lacks {needle:?}");
        };
        let e = parse_text(&format!("lang = \"de\"\n{base}"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("sopvault.toml, line 1: lang \"de\""), "{e}");
        check("pasword-file = \"/s\"\n", 3, "unknown field");
        check(
            "\n[[source]]\nname = \"db\"\npaths = [\"/x\"]\ndays = [\"Mo\"]\nkeep = { daily = 3 }\n",
            7,
            "day \"Mo\"",
        );
        check(
            "[[source]]\nname = \"db\"\npaths = [\"/x\"]\nkeep = {}\n",
            6,
            "no rule given",
        );
        check(
            "[[source]]\nname = \"db\"\npaths = [\"/x\"]\nmin-size = \"10 MB/s\"\nkeep = { daily = 1 }\n",
            6,
            "unknown unit",
        );
        check(
            "[[source]]\nname = \"db\"\npaths = [\"/x\"]\nkeep = { daily = 1 }\n[[source]]\nname = \"db\"\npaths = [\"/y\"]\nkeep = { daily = 1 }\n",
            8,
            "a second source named \"db\"",
        );
        check(
            "[[source]]\nname = \"a b\"\npaths = [\"/x\"]\nkeep = { daily = 1 }\n",
            4,
            "invalid source name",
        );
        check(
            "[[mirror]]\nname = \"hdd\"\ntarget = \"/m\"\nverify-sample = \"150%\"\n",
            6,
            "0% to 100%",
        );
    }

    #[test]
    fn sizes_and_days() {
        assert_eq!(parse_size(&toml::Value::Integer(5)).unwrap(), 5);
        assert_eq!(
            parse_size(&toml::Value::String("1.5 GB".into())).unwrap(),
            1_500_000_000
        );
        assert_eq!(
            parse_size(&toml::Value::String("2KiB".into())).unwrap(),
            2048
        );
        assert!(parse_size(&toml::Value::Integer(-1)).is_err());
        assert!(parse_days(&["mon".into(), "mon".into()]).is_err());
        assert_eq!(parse_days(&["daily".into()]).unwrap().len(), 7);
        assert_eq!(parse_percent("0.5%").unwrap(), 5);
    }
}
