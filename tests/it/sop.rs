//! The written procedure through the real binary: `sopvault.toml` and
//! `config check` (issue 22).

use crate::common::{stderr, stdout, Sandbox};

/// The example configuration the README points to (also read by the unit tests).
const CONFIG: &str = include_str!("../../docs/sopvault.example.toml");

#[test]
fn config_check_prints_what_a_run_would_do_that_day() {
    let sb = Sandbox::new();
    let cfg = sb.write("sopvault.toml", CONFIG.as_bytes());
    let cfg = cfg.to_str().unwrap();
    // 2026-12-08 is a Tuesday: the web tree (Mon/Wed/Fri) is not due.
    let tue = stdout(&sb.ok(&[
        "config",
        "check",
        "--config",
        cfg,
        "--time",
        "2026-12-08T00:00:00+07:00",
    ]));
    assert!(tue.contains("a run on a tue would:"), "{tue}");
    assert!(
        tue.contains("1. snapshot siakad-db: siakad.sql from `pg_dump siakad`"),
        "{tue}"
    );
    assert!(
        tue.contains("2. skip siakad-web (runs on mon, wed, fri)"),
        "{tue}"
    );
    assert!(
        tue.contains("prune siakad-db: keep daily 31, monthly 24"),
        "{tue}"
    );
    assert!(tue.contains("mirror to hdd at /media/backup (a mounted disk; if absent: storage media not available)"), "{tue}");
    assert!(tue.contains("then verify 2.0% of its files"), "{tue}");
    let wed = stdout(&sb.ok(&[
        "config",
        "check",
        "--config",
        cfg,
        "--time",
        "2026-12-09T00:00:00+07:00",
    ]));
    assert!(
        wed.contains("2. snapshot siakad-web: /var/www/siakad"),
        "{wed}"
    );
}

#[test]
fn a_bad_config_is_a_usage_error_naming_the_line() {
    let sb = Sandbox::new();
    let cases = [
        (
            CONFIG.replace("\"mon\", \"wed\"", "\"mon\", \"Rabu\""),
            "line 21: day \"Rabu\"",
        ),
        (
            CONFIG.replace("unit = ", "unti = "),
            "line 9: unknown field `unti`",
        ),
        (
            CONFIG.replace("daily = 14, monthly = 12", ""),
            "line 22: keep: no rule given",
        ),
        (
            CONFIG.replace("name = \"drive\"", "name = \"hdd\""),
            "line 29: a second mirror named \"hdd\"",
        ),
    ];
    for (text, expected) in cases {
        let cfg = sb.write("bad.toml", text.as_bytes());
        let out = sb.code(&["config", "check", "--config", cfg.to_str().unwrap()], 2);
        let err = stderr(&out);
        assert!(err.contains(&format!("bad.toml, {expected}")), "{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
    let out = sb.code(&["config", "check", "--config", &sb.arg("missing.toml")], 1);
    assert!(stderr(&out).contains("missing.toml"), "{}", stderr(&out));
}
