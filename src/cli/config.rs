//! `sopvault config check`: reads `sopvault.toml`, checks every value, and
//! prints what a run would do on a given day.

use sopvault::ops::retention::{Count, Policy};
use sopvault::sop::config::{self, Plan, Weekday};
use sopvault::Error;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum ConfigCommand {
    /// Check sopvault.toml (unknown keys and bad values are errors naming the line) and print what a run would do
    Check(CheckArgs),
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The configuration file [default: /etc/sopvault/sopvault.toml, then ~/.config/sopvault/sopvault.toml]
    #[arg(long, env = "SOPVAULT_CONFIG")]
    config: Option<PathBuf>,
    /// The day to plan for, RFC 3339 (default: now)
    #[arg(long)]
    time: Option<String>,
}

pub fn run(cmd: ConfigCommand) -> Result<i32, Error> {
    match cmd {
        ConfigCommand::Check(args) => check(args),
    }
}

/// The file `--config` names, or the first default that exists.
pub fn find(given: Option<PathBuf>) -> Result<PathBuf, Error> {
    if let Some(p) = given {
        return Ok(p);
    }
    let candidates = config::default_paths();
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .ok_or_else(|| {
            let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            Error::Usage(format!(
                "no configuration file: give --config FILE (looked for {})",
                tried.join(", ")
            ))
        })
}

fn check(args: CheckArgs) -> Result<i32, Error> {
    let path = find(args.config)?;
    let plan = config::load(&path)?;
    let day = match super::parse_time(args.time.as_deref())? {
        Some(t) => Weekday::from_chrono(chrono::Datelike::weekday(&t.to_datetime())),
        None => Weekday::from_chrono(chrono::Datelike::weekday(&chrono::Local::now())),
    };
    print_plan(&plan, day)?;
    Ok(super::exit::OK)
}

fn print_plan(plan: &Plan, day: Weekday) -> Result<(), Error> {
    outln!("{}: ok", plan.path.display())?;
    outln!("repository: {}", plan.repository.path.get_ref())?;
    outln!("report language: {}", plan.lang)?;
    outln!("a run on a {} would:", day.name())?;
    let mut step = 1;
    for s in &plan.sources {
        let due = s.days.contains(&day);
        let what: Vec<String> = s
            .paths
            .iter()
            .map(|p| p.display().to_string())
            .chain(s.streams.iter().map(|(n, c)| format!("{n} from `{c}`")))
            .collect();
        if due {
            outln!("  {step}. snapshot {}: {}", s.name, what.join(", "))?;
        } else {
            outln!("  {step}. skip {} (runs on {})", s.name, days(&s.days))?;
        }
        step += 1;
    }
    for s in &plan.sources {
        outln!("  {step}. prune {}: keep {}", s.name, policy(&s.policy))?;
        step += 1;
    }
    for m in &plan.mirrors {
        let media = if m.mount_point && !m.target.contains(':') {
            " (a mounted disk; if absent: storage media not available)"
        } else {
            ""
        };
        outln!(
            "  {step}. mirror to {} at {}{media}, then verify {}.{}% of its files",
            m.name,
            m.target,
            m.verify_permille / 10,
            m.verify_permille % 10
        )?;
        step += 1;
    }
    Ok(())
}

fn days(d: &[Weekday]) -> String {
    if d.len() == 7 {
        return "every day".into();
    }
    d.iter().map(|w| w.name()).collect::<Vec<_>>().join(", ")
}

fn policy(p: &Policy) -> String {
    let rules = [
        ("last", p.keep_last),
        ("hourly", p.keep_hourly),
        ("daily", p.keep_daily),
        ("weekly", p.keep_weekly),
        ("monthly", p.keep_monthly),
        ("yearly", p.keep_yearly),
    ];
    rules
        .iter()
        .filter_map(|(name, c)| match c {
            Some(Count::N(n)) => Some(format!("{name} {n}")),
            Some(Count::Unlimited) => Some(format!("{name} unlimited")),
            None => None,
        })
        .collect::<Vec<_>>()
        .join(", ")
}
