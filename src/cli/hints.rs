//! The command line's words for the engine's errors. The engine says what is
//! wrong without naming a flag; where the fix is a flag or a command of this
//! command line, this is where the hint is added, so that the message a user
//! reads names the flag to give.

use sopvault::Error;

/// The message for `e`, with the command line's hint where there is one.
pub fn describe(e: &Error) -> String {
    match e {
        Error::NoKeepRule => format!("{e} (use --keep-daily, --keep-monthly, ...)"),
        Error::WouldRemoveAll { .. } => format!("{e} (give --allow-remove-all if you mean it)"),
        Error::UnknownGroupField { field } => {
            format!("--group-by: unknown field {field:?} (source, host, tags)")
        }
        Error::NothingToBackUp => "nothing to back up: give paths, --stream or --stdin".into(),
        Error::EmptyStream { name, what } => format!(
            "stream {name:?} failed: {what} (give --allow-empty if an empty stream is expected); \
             no snapshot was written"
        ),
        Error::NotAMirror { .. } => {
            format!("{e}; run `sopvault mirror --init` to start a new mirror there")
        }
        Error::PasswordIsSecret { .. } => format!("{e} (key add --secret-file)"),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_the_flag_and_keep_the_engine_message() {
        assert_eq!(
            describe(&Error::NoKeepRule),
            "no keep rule given: refusing to forget every snapshot (use --keep-daily, --keep-monthly, ...)"
        );
        assert_eq!(
            describe(&Error::EmptyStream {
                name: "db.sql".into(),
                what: "the command wrote nothing"
            }),
            "stream \"db.sql\" failed: the command wrote nothing (give --allow-empty if an empty \
             stream is expected); no snapshot was written"
        );
        let plain = Error::Usage("no such snapshot".into());
        assert_eq!(describe(&plain), plain.to_string());
    }
}
